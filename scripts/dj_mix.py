#!/usr/bin/env python3
"""dj_mix.py CATALOG.csv OUT_PREFIX [--seed N] [--tracks N] [--noise WAV --snr DB]

A DJ set as a DJ would play it, unlike the dev corpus's venue sessions
(crossfades of 2-4 s, tempo 0.96, 1 or 1.04): each track at its own tempo,
anywhere in 0.94-1.06 (pitch kept, as a DJ's key lock does), and long
equal-power crossfades of 8-16 s, during which both tracks are loud. A venue
recording of crowd noise can be laid under it at a given SNR.

Writes OUT_PREFIX.wav (mono, 44.1 kHz, 16 bit) and OUT_PREFIX_timeline.csv in
the venue sessions' format, which `earmark eval-session` reads: a track starts
where its fade-in begins and ends where its fade-out ends.
"""
import argparse
import csv
import os
import random
import shutil
import subprocess
import tempfile


def sox(*args):
    subprocess.run(['sox', '-V1', *map(str, args)], check=True)


def rms_db(path):
    out = subprocess.run(['sox', path, '-n', 'stats'], capture_output=True, text=True).stderr
    line = next(l for l in out.splitlines() if l.startswith('RMS lev dB'))
    return float(line.split()[3])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('catalog')
    ap.add_argument('out')
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--tracks', type=int, default=10)
    ap.add_argument('--noise', help='a recording laid under the whole set, looped')
    ap.add_argument('--snr', type=float, default=10.0, help='music over noise, dB')
    a = ap.parse_args()
    rng = random.Random(a.seed)
    with open(a.catalog, newline='') as f:
        tracks = [t for t in csv.DictReader(f) if float(t['duration_s']) >= 150]
    chosen = rng.sample(tracks, a.tracks)
    tmp = tempfile.mkdtemp(prefix='dj_mix_')
    rows, inputs, at = [], [], 5.0
    try:
        for i, t in enumerate(chosen):
            tempo = round(rng.uniform(0.94, 1.06), 3)
            length = rng.uniform(70, 130)
            fade_in = rows[-1]['xfade_out_s'] if rows else 1.0
            fade_out = round(rng.uniform(8, 16), 2) if i < a.tracks - 1 else 5.0
            span = length * tempo
            start = rng.uniform(0, float(t['duration_s']) - span - 1)
            raw, piece = (os.path.join(tmp, f'{name}{i:02}.wav') for name in ('raw', 'piece'))
            # ffmpeg decodes what sox cannot (Opus); sox does the rest.
            subprocess.run(['ffmpeg', '-v', 'error', '-i', t['abspath'], '-ss', f'{start:.3f}',
                            '-t', f'{span + 1:.3f}', '-ac', '1', '-ar', '44100', '-c:a', 'pcm_f32le',
                            raw], check=True)
            sox('-v', '0.5', raw, piece, 'tempo', '-m', tempo,  # headroom for tempo and mixing
                'trim', '0', f'{length:.3f}',
                'fade', 'q', f'{fade_in:.3f}', f'{length:.3f}', f'{fade_out:.3f}',
                'pad', f'{at:.3f}', '0')
            os.remove(raw)
            inputs.append(piece)
            rows.append(dict(kind='catalog', track_id=t['id'], start_s=round(at, 3),
                             end_s=round(at + length, 3), src_start_s=round(start, 3),
                             src_end_s=round(start + span, 3), tempo=tempo,
                             xfade_in_s=fade_in, xfade_out_s=fade_out, ooc_source='', text=''))
            at += length - fade_out
        total = rows[-1]['end_s'] + 3
        music = os.path.join(tmp, 'music.wav')
        sox('-m', *inputs, '-e', 'floating-point', '-b', '32', music, 'pad', '0', '3')
        out = a.out + '.wav'
        if a.noise:
            noise = os.path.join(tmp, 'noise.wav')
            sox(a.noise, '-r', '44100', '-c', '1', noise, 'repeat', '-', 'trim', '0', f'{total:.3f}')
            gain = rms_db(music) - a.snr - rms_db(noise)
            sox('-m', music, '-v', f'{10 ** (gain / 20):.4f}', noise, '-b', '16', out, 'gain', '-n', '-1')
        else:
            sox(music, '-b', '16', out, 'gain', '-n', '-1')
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with open(a.out + '_timeline.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f'wrote {a.out}.wav ({total:.0f} s, {a.tracks} tracks) and {a.out}_timeline.csv')


if __name__ == '__main__':
    main()
