//! Where the monitor's audio comes from: an audio file (replayed in real time
//! or as fast as it decodes), raw PCM on standard input, or the sound card
//! ([`crate::capture`]). Every source hands out mono samples.

use std::path::Path;
use std::time::{Duration, Instant};

use earmark_engine::AudioFile;
use earmark_engine::decode::downmix;

use crate::Error;

/// What a read from a source gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// Mono samples were put in the buffer.
    Audio,
    /// Nothing yet; read again.
    Idle,
    /// The device stopped delivering audio; the source keeps trying.
    Lost(String),
    /// The device is back, possibly at another sample rate.
    Back,
    /// The input is over.
    End,
}

/// A stream of audio.
pub trait Source {
    /// What the source is, for the log and the screen.
    fn describe(&self) -> String;
    /// Sample rate of what [`Source::read`] delivers.
    fn rate_hz(&self) -> u32;
    /// True when audio arrives as it is played, so positions follow the
    /// wall clock.
    fn live(&self) -> bool;
    /// Replaces `mono` with the next samples, or says why there are none.
    ///
    /// # Errors
    /// When the input cannot be read or decoded any further.
    fn read(&mut self, mono: &mut Vec<f32>) -> Result<Delivery, Error>;
    /// Times audio was dropped because it was not read fast enough.
    fn overruns(&self) -> u64 {
        0
    }
}

/// An audio file, replayed in real time or as fast as it decodes.
#[derive(Debug)]
pub struct FileSource {
    file: AudioFile,
    /// Wall clock of the first sample and samples handed out, when paced.
    pace: Option<(Instant, u64)>,
    realtime: bool,
}

impl FileSource {
    /// Opens a file; with `realtime`, samples are handed out no faster than
    /// they would play.
    ///
    /// # Errors
    /// When the file is not audio earmark can decode.
    pub fn open(path: &Path, realtime: bool) -> Result<Self, Error> {
        Ok(Self {
            file: AudioFile::open(path)?,
            pace: None,
            realtime,
        })
    }
}

impl Source for FileSource {
    fn describe(&self) -> String {
        format!("file {}", self.file.path().display())
    }

    fn rate_hz(&self) -> u32 {
        self.file.rate_hz()
    }

    fn live(&self) -> bool {
        self.realtime
    }

    fn read(&mut self, mono: &mut Vec<f32>) -> Result<Delivery, Error> {
        let rate = self.file.rate_hz() as f64;
        let Some(samples) = self.file.next_mono()? else {
            return Ok(Delivery::End);
        };
        mono.clear();
        mono.extend_from_slice(samples);
        if self.realtime {
            let (start, sent) = self.pace.get_or_insert_with(|| (Instant::now(), 0));
            *sent += mono.len() as u64;
            let due = *start + Duration::from_secs_f64(*sent as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        Ok(Delivery::Audio)
    }
}

/// Sample encodings accepted on standard input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PcmFormat {
    /// Signed 16-bit little-endian integers.
    S16Le,
    /// 32-bit little-endian floats.
    F32Le,
}

impl PcmFormat {
    fn bytes(self) -> usize {
        match self {
            Self::S16Le => 2,
            Self::F32Le => 4,
        }
    }

    fn decode(self, b: &[u8]) -> f32 {
        match self {
            Self::S16Le => i16::from_le_bytes([b[0], b[1]]) as f32 / 32_768.0,
            Self::F32Le => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        }
    }
}

/// Raw interleaved PCM from any reader (standard input).
#[derive(Debug)]
pub struct PcmSource<R> {
    reader: R,
    format: PcmFormat,
    channels: usize,
    rate_hz: u32,
    bytes: Vec<u8>,
    /// Bytes at the front of `bytes` left over from the last read.
    filled: usize,
    interleaved: Vec<f32>,
}

impl<R: std::io::Read> PcmSource<R> {
    /// Raw PCM of the given layout.
    ///
    /// # Errors
    /// When the channels or the rate are out of the range files may have.
    pub fn new(reader: R, format: PcmFormat, channels: usize, rate_hz: u32) -> Result<Self, Error> {
        use earmark_engine::decode::{MAX_CHANNELS, RATE_RANGE_HZ};
        if !(1..=MAX_CHANNELS).contains(&channels) || !RATE_RANGE_HZ.contains(&rate_hz) {
            return Err(Error::Device(format!(
                "raw PCM of {channels} channels at {rate_hz} Hz: needs 1 to {MAX_CHANNELS} \
                 channels at {} to {} Hz",
                RATE_RANGE_HZ.start(),
                RATE_RANGE_HZ.end()
            )));
        }
        Ok(Self {
            reader,
            format,
            channels,
            rate_hz,
            // About 0.1 s of audio per read.
            bytes: vec![0; (rate_hz as usize / 10).max(1) * channels * format.bytes()],
            filled: 0,
            interleaved: Vec::new(),
        })
    }
}

impl<R: std::io::Read> Source for PcmSource<R> {
    fn describe(&self) -> String {
        format!(
            "raw PCM on standard input ({:?}, {} Hz, {} channels)",
            self.format, self.rate_hz, self.channels
        )
    }

    fn rate_hz(&self) -> u32 {
        self.rate_hz
    }

    fn live(&self) -> bool {
        false
    }

    fn read(&mut self, mono: &mut Vec<f32>) -> Result<Delivery, Error> {
        let n = loop {
            match self.reader.read(&mut self.bytes[self.filled..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(Path::new("<stdin>"), e)),
            }
        };
        if n == 0 {
            return Ok(Delivery::End);
        }
        self.filled += n;
        let frame = self.channels * self.format.bytes();
        let whole = self.filled - self.filled % frame;
        self.interleaved.clear();
        self.interleaved.extend(
            self.bytes[..whole]
                .chunks_exact(self.format.bytes())
                .map(|b| self.format.decode(b)),
        );
        self.bytes.copy_within(whole..self.filled, 0);
        self.filled -= whole;
        downmix(&self.interleaved, self.channels, mono);
        Ok(Delivery::Audio)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out its bytes a few at a time, splitting frames.
    struct Trickle(Vec<u8>, usize);

    impl std::io::Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(3).min(self.0.len() - self.1);
            buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
            self.1 += n;
            Ok(n)
        }
    }

    #[test]
    fn pcm_frames_split_across_reads_are_downmixed_whole() {
        // Stereo s16: left 0.5, right -0.5 mixes to 0; left = right = 0.25 to 0.25.
        let frames: [[i16; 2]; 3] = [[16_384, -16_384], [8_192, 8_192], [8_192, 8_192]];
        let bytes: Vec<u8> = frames
            .iter()
            .flatten()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let mut source =
            PcmSource::new(Trickle(bytes, 0), PcmFormat::S16Le, 2, 8_000).expect("source");
        let (mut mono, mut all) = (Vec::new(), Vec::new());
        while source.read(&mut mono).expect("read") == Delivery::Audio {
            all.extend_from_slice(&mono);
        }
        assert_eq!(all, vec![0.0, 0.25, 0.25]);
    }

    #[test]
    fn pcm_of_impossible_layouts_is_refused() {
        for (channels, rate_hz) in [(2, 1), (2, 4_000_000_000), (1_000, 44_100), (0, 44_100)] {
            let refused = PcmSource::new(std::io::empty(), PcmFormat::S16Le, channels, rate_hz);
            assert!(refused.is_err(), "{channels} channels at {rate_hz} Hz");
        }
    }
}
