#!/usr/bin/env python3
"""pad_wav.py SOURCE.wav PADDED.wav MS - SOURCE after MS milliseconds of
silence: every STFT frame moves by MS / 32 of a hop, and so does which peaks
a frame grid catches (sessions.sh, ooc_sessions.sh)."""
import sys
import wave

source, padded, ms = sys.argv[1], sys.argv[2], int(sys.argv[3])
with wave.open(source) as w:
    params, frames = w.getparams(), w.readframes(w.getnframes())
with wave.open(padded, "wb") as out:
    out.setparams(params)
    silence = params.framerate * ms // 1000 * params.sampwidth * params.nchannels
    out.writeframes(bytes(silence) + frames)
