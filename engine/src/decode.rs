//! Streaming decode of any supported file into mono PCM.
//!
//! This is the only module that names symphonia (and its libopus adapter), so a
//! codec upgrade touches one file. A file is decoded packet by packet: memory
//! stays bounded whatever the file's length. Bad packets are skipped and counted;
//! a stream that keeps failing is reported as corrupt.

use std::fs::File;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use symphonia::core::audio::conv::FromSample;
use symphonia::core::audio::sample::Sample;
use symphonia::core::audio::{Audio, AudioBuffer, GenericAudioBufferRef};
use symphonia::core::codecs::CodecParameters;
use symphonia::core::codecs::audio::well_known::CODEC_ID_PCM_S16LE;
use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::codecs::registry::CodecRegistry;
use symphonia::core::common::Limit;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;

use crate::error::{Error, Result};
use crate::unfinished::Finished;

/// An unfinished WAV file (see [`crate::unfinished`]) is read like any.
impl MediaSource for Finished<File> {
    fn is_seekable(&self) -> bool {
        true
    }

    fn byte_len(&self) -> Option<u64> {
        Some(self.len())
    }
}

/// Sample rates outside this range are refused rather than guessed at.
pub const RATE_RANGE_HZ: std::ops::RangeInclusive<u32> = 1_000..=768_000;
/// More channels than this is not a music stream.
pub const MAX_CHANNELS: usize = 64;
/// Consecutive undecodable packets after which a stream counts as corrupt.
const MAX_CONSECUTIVE_BAD_PACKETS: u32 = 64;

/// The codecs symphonia knows plus Opus through libopus.
fn codecs() -> &'static CodecRegistry {
    static REGISTRY: OnceLock<CodecRegistry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut registry = CodecRegistry::new();
        symphonia::default::register_enabled_codecs(&mut registry);
        registry.register_audio_decoder::<symphonia_adapter_libopus::OpusDecoder>();
        registry
    })
}

/// An open audio stream that yields mono samples at the file's own rate.
pub struct AudioFile {
    path: PathBuf,
    reader: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    track_id: u32,
    rate_hz: u32,
    channels: usize,
    duration_s: Option<f64>,
    interleaved: Vec<f32>,
    mono: Vec<f32>,
    skipped_packets: u64,
    decoded_any: bool,
}

impl std::fmt::Debug for AudioFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioFile")
            .field("path", &self.path)
            .field("rate_hz", &self.rate_hz)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl AudioFile {
    /// Opens a file and finds its first audio track.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be opened, [`Error::Unsupported`] if it is
    /// not audio in a known format, [`Error::Corrupt`] if its headers are damaged.
    pub fn open(path: &Path) -> Result<Self> {
        let io = |error| Error::Io {
            path: path.to_owned(),
            error,
        };
        let file = File::open(path).map_err(io)?;
        let source: Box<dyn MediaSource> = match Finished::new(file).map_err(io)? {
            Ok(mended) => Box::new(mended),
            Err(file) => Box::new(file),
        };
        let mut hint = Hint::new();
        if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            hint.with_extension(ext);
        }
        Self::from_source(path.to_owned(), source, &hint)
    }

    /// Opens audio held in memory (an upload, say); `name` is used in errors.
    ///
    /// # Errors
    /// As [`AudioFile::open`].
    pub fn from_bytes(name: &str, bytes: impl AsRef<[u8]> + Send + Sync + 'static) -> Result<Self> {
        Self::from_source(
            PathBuf::from(name),
            Box::new(Cursor::new(bytes)),
            &Hint::new(),
        )
    }

    fn from_source(path: PathBuf, source: Box<dyn MediaSource>, hint: &Hint) -> Result<Self> {
        let stream = MediaSourceStream::new(source, Default::default());
        let meta = MetadataOptions::default()
            .limit_tag_bytes(Limit::Maximum(1 << 20))
            .limit_visual_bytes(Limit::Maximum(1));
        let reader = symphonia::default::get_probe()
            .probe(hint, stream, FormatOptions::default(), meta)
            .map_err(|e| classify(&path, e, "not a recognised audio format"))?;
        let (decoder, track_id, rate_hz, channels, duration_s) = open_track(&path, &*reader)?;
        Ok(Self {
            path,
            reader,
            decoder,
            track_id,
            rate_hz,
            channels,
            duration_s,
            interleaved: Vec::new(),
            mono: Vec::new(),
            skipped_packets: 0,
            decoded_any: false,
        })
    }

    /// The file's sample rate.
    pub fn rate_hz(&self) -> u32 {
        self.rate_hz
    }

    /// The number of channels that are mixed down.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The duration the container declares, if it declares one.
    pub fn duration_s(&self) -> Option<f64> {
        self.duration_s
    }

    /// The file this stream reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Packets that could not be decoded and were skipped.
    pub fn skipped_packets(&self) -> u64 {
        self.skipped_packets
    }

    /// Decodes the next packet and returns its samples mixed down to mono, or
    /// `None` at the end of the stream. Non-finite samples become silence.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the stream keeps failing to decode or changes its
    /// sample rate, [`Error::Io`] on read errors other than a truncated end.
    pub fn next_mono(&mut self) -> Result<Option<&[f32]>> {
        let mut bad_in_a_row = 0u32;
        loop {
            let packet = match self.reader.next_packet() {
                Ok(Some(packet)) => packet,
                Ok(None) => return self.end(),
                Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    // A truncated file: keep what was decoded.
                    return self.end();
                }
                Err(SymError::ResetRequired) => {
                    self.reopen()?;
                    continue;
                }
                Err(SymError::DecodeError(reason)) => {
                    bad_in_a_row += 1;
                    self.skipped_packets += 1;
                    if bad_in_a_row > MAX_CONSECUTIVE_BAD_PACKETS {
                        return Err(self.corrupt(reason));
                    }
                    continue;
                }
                Err(e) => return Err(classify(&self.path, e, "cannot read the stream")),
            };
            if packet.track_id != self.track_id {
                continue;
            }
            if self.is_pcm16() {
                downmix_pcm16(&packet.data, self.channels, &mut self.mono);
                self.decoded_any = true;
                return Ok(Some(&self.mono));
            }
            match self.decoder.decode(&packet) {
                Ok(buffer) => {
                    let channels = buffer.spec().channels().count().max(1);
                    if buffer.spec().rate() != self.rate_hz {
                        return Err(self.corrupt("the sample rate changes inside the stream"));
                    }
                    // The common formats (float from Vorbis, MP3, AAC and
                    // Opus; integer from WAV and FLAC): average the planes
                    // directly instead of interleaving first.
                    let mono = &mut self.mono;
                    match buffer {
                        GenericAudioBufferRef::F32(planar) => {
                            downmix_planes(planar, channels, mono)
                        }
                        GenericAudioBufferRef::S16(planar) => {
                            downmix_planes(planar, channels, mono)
                        }
                        GenericAudioBufferRef::S24(planar) => {
                            downmix_planes(planar, channels, mono)
                        }
                        GenericAudioBufferRef::S32(planar) => {
                            downmix_planes(planar, channels, mono)
                        }
                        other => {
                            other.copy_to_vec_interleaved(&mut self.interleaved);
                            downmix(&self.interleaved, channels, mono);
                        }
                    }
                    self.decoded_any = true;
                    return Ok(Some(&self.mono));
                }
                Err(SymError::DecodeError(reason)) => {
                    bad_in_a_row += 1;
                    self.skipped_packets += 1;
                    if bad_in_a_row > MAX_CONSECUTIVE_BAD_PACKETS {
                        return Err(self.corrupt(reason));
                    }
                }
                Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return self.end();
                }
                Err(e) => return Err(classify(&self.path, e, "cannot decode the stream")),
            }
        }
    }

    fn end(&mut self) -> Result<Option<&[f32]>> {
        if !self.decoded_any && self.skipped_packets > 0 {
            return Err(self.corrupt("no packet could be decoded"));
        }
        Ok(None)
    }

    fn reopen(&mut self) -> Result<()> {
        let (decoder, track_id, rate_hz, channels, _) = open_track(&self.path, &*self.reader)?;
        if rate_hz != self.rate_hz {
            return Err(self.corrupt("the sample rate changes inside the stream"));
        }
        self.decoder = decoder;
        self.track_id = track_id;
        self.channels = channels;
        Ok(())
    }

    /// Whether the stream is interleaved 16-bit little-endian PCM with every
    /// bit coded (most WAV files), which [`downmix_pcm16`] reads directly.
    fn is_pcm16(&self) -> bool {
        let params = self.decoder.codec_params();
        let bits = params.bits_per_sample.unwrap_or(16);
        params.codec == CODEC_ID_PCM_S16LE
            && bits == 16
            && params.bits_per_coded_sample.unwrap_or(bits) == 16
            && params.channels.as_ref().map_or(1, |c| c.count()) == self.channels
    }

    fn corrupt(&self, reason: &str) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            reason: reason.to_owned(),
        }
    }
}

type OpenedTrack = (Box<dyn AudioDecoder>, u32, u32, usize, Option<f64>);

fn open_track(path: &Path, reader: &dyn FormatReader) -> Result<OpenedTrack> {
    let unsupported = |reason: &str| Error::Unsupported {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let track = reader
        .default_track(TrackType::Audio)
        .ok_or_else(|| unsupported("no audio track"))?;
    let Some(CodecParameters::Audio(params)) = &track.codec_params else {
        return Err(unsupported("no audio track"));
    };
    let decoder = codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(|e| classify(path, e, "unsupported codec"))?;
    let rate_hz = params
        .sample_rate
        .ok_or_else(|| unsupported("the sample rate is not declared"))?;
    if !RATE_RANGE_HZ.contains(&rate_hz) {
        return Err(unsupported(&format!(
            "sample rate {rate_hz} Hz is out of range"
        )));
    }
    let channels = params.channels.as_ref().map_or(1, |c| c.count());
    if channels == 0 || channels > MAX_CHANNELS {
        return Err(unsupported(&format!("{channels} channels is out of range")));
    }
    let duration_s = match (track.time_base, track.duration) {
        (Some(tb), Some(d)) => tb.calc_duration(d).map(|t| t.as_secs_f64()),
        _ => None,
    };
    Ok((decoder, track.id, rate_hz, channels, duration_s))
}

/// Maps a symphonia error to ours, with `context` when symphonia says little.
fn classify(path: &Path, error: SymError, context: &str) -> Error {
    let path = path.to_owned();
    match error {
        SymError::IoError(source) if source.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::Unsupported {
                path,
                reason: format!("{context} (the file ends too early)"),
            }
        }
        SymError::IoError(error) => Error::Io { path, error },
        SymError::Unsupported(what) => Error::Unsupported {
            path,
            reason: format!("{context}: {what}"),
        },
        SymError::DecodeError(what) => Error::Corrupt {
            path,
            reason: what.to_owned(),
        },
        other => Error::Corrupt {
            path,
            reason: other.to_string(),
        },
    }
}

/// Averages the planes of a buffer into `mono`, each sample converted to
/// float as symphonia converts it.
fn downmix_planes<S: Sample>(buffer: &AudioBuffer<S>, channels: usize, mono: &mut Vec<f32>)
where
    f32: FromSample<S>,
{
    let planes = (0..channels).filter_map(|c| buffer.plane(c));
    average(
        planes.map(|plane| plane.iter().map(|&s| f32::from_sample(s))),
        buffer.frames(),
        channels,
        mono,
    );
}

/// Averages the channels of interleaved 16-bit little-endian PCM into `mono`,
/// each sample converted as symphonia's PCM decoder converts it: the same
/// values, without the decoder reading each sample through its own call (a
/// tenth of the time of an identify request with a WAV clip). A trailing
/// partial frame is dropped, as the decoder drops it.
fn downmix_pcm16(data: &[u8], channels: usize, mono: &mut Vec<f32>) {
    let channels = channels.max(1);
    let frames = data.chunks_exact(2 * channels);
    let planes = (0..channels).map(|c| {
        let at = 2 * c;
        (frames.clone()).map(move |f| f32::from_sample(i16::from_le_bytes([f[at], f[at + 1]])))
    });
    average(planes, frames.len(), channels, mono);
}

/// Averages interleaved channels into `mono`, turning NaN and infinities into 0.
pub fn downmix(interleaved: &[f32], channels: usize, mono: &mut Vec<f32>) {
    let channels = channels.max(1);
    let frames = interleaved.chunks_exact(channels);
    let planes = (0..channels).map(|c| frames.clone().map(move |f| f[c]));
    average(planes, frames.len(), channels, mono);
}

/// Averages `frames` frames of `channels` channels, given as one iterator
/// per channel (a missing one is silence), into `mono`, a channel at a time.
/// A non-finite sample, or sum, is silence.
fn average<P: Iterator<Item = f32>>(
    mut planes: impl Iterator<Item = P>,
    frames: usize,
    channels: usize,
    mono: &mut Vec<f32>,
) {
    let finite = |s: f32| if s.is_finite() { s } else { 0.0 };
    mono.clear();
    if let Some(first) = planes.next() {
        mono.extend(first.take(frames).map(finite));
    }
    mono.resize(frames, 0.0);
    for plane in planes {
        for (m, s) in mono.iter_mut().zip(plane) {
            *m += finite(s);
        }
    }
    if channels > 1 {
        let scale = 1.0 / channels as f32;
        for m in mono.iter_mut() {
            *m = finite(*m * scale);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downmix_averages_and_drops_non_finite() {
        let mut mono = Vec::new();
        downmix(
            &[1.0, 0.0, f32::NAN, 0.5, 0.25, f32::INFINITY],
            2,
            &mut mono,
        );
        assert_eq!(mono, vec![0.5, 0.25, 0.125]);
    }

    #[test]
    fn non_audio_bytes_are_unsupported() {
        let err = AudioFile::from_bytes("notes.txt", b"just some text, not audio".to_vec())
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.starts_with("notes.txt:")));
    }

    /// A stereo WAV of `bits`-bit integers, left `left[i]` and right the
    /// negated half of it, in full-scale units.
    fn stereo_wav(bits: u16, left: &[i32]) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8_000,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut bytes = std::io::Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut bytes, spec).expect("writer");
        for &l in left {
            writer.write_sample(l).expect("left");
            writer.write_sample(-l / 2).expect("right");
        }
        writer.finalize().expect("finalize");
        bytes.into_inner()
    }

    #[test]
    fn integer_pcm_is_averaged_at_full_scale() {
        for (bits, full) in [(16u16, 32_768.0f32), (24, 8_388_608.0)] {
            let left: Vec<i32> = [0.5f32, -0.25, 0.125, 1.0 - 1.0 / full]
                .iter()
                .map(|&x| (x * full) as i32)
                .collect();
            let mut file = AudioFile::from_bytes("pcm.wav", stereo_wav(bits, &left)).expect("open");
            let mut mono = Vec::new();
            while let Some(chunk) = file.next_mono().expect("decode") {
                mono.extend_from_slice(chunk);
            }
            let want: Vec<f32> = left
                .iter()
                .map(|&l| (l as f32 / full + (-l / 2) as f32 / full) / 2.0)
                .collect();
            assert_eq!(mono, want, "{bits}-bit");
        }
    }

    #[test]
    fn pcm16_is_read_as_symphonias_decoder_reads_it() {
        for channels in [1u16, 2, 3] {
            let spec = hound::WavSpec {
                channels,
                sample_rate: 44_100,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            let mut bytes = std::io::Cursor::new(Vec::new());
            let mut writer = hound::WavWriter::new(&mut bytes, spec).expect("writer");
            let mut x = 12_345u32;
            for _ in 0..30_000 * channels as usize {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                writer.write_sample((x >> 16) as i16).expect("sample");
            }
            writer.finalize().expect("finalize");
            let mut file = AudioFile::from_bytes("pcm.wav", bytes.into_inner()).expect("open");
            assert!(file.is_pcm16());
            let (mut packets, mut direct, mut decoded) = (0, Vec::new(), Vec::new());
            while let Some(packet) = file.reader.next_packet().expect("read") {
                downmix_pcm16(&packet.data, channels as usize, &mut direct);
                match file.decoder.decode(&packet).expect("decode") {
                    GenericAudioBufferRef::S16(planar) => {
                        downmix_planes(planar, channels as usize, &mut decoded)
                    }
                    _ => panic!("16-bit PCM decodes to 16-bit samples"),
                }
                assert!(direct == decoded, "{channels} channels");
                packets += 1;
            }
            assert!(packets > 1);
        }
    }

    #[test]
    fn empty_input_is_an_error() {
        assert!(AudioFile::from_bytes("empty.wav", Vec::new()).is_err());
    }
}
