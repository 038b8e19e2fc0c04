//! WAV files whose writer never finished them.
//!
//! A recorder writes a WAV header with sizes of 0 and fills them in when it
//! stops; one that crashes or loses power leaves the zeros, which say that
//! the file holds nothing. Read through [`Finished`], such a file's header
//! gives the sizes of the bytes that are there, so the recording up to the
//! crash is not lost.

use std::io::{self, Read, Seek, SeekFrom};

/// How much of a file's start is searched for the `data` chunk.
const HEAD_BYTES: u64 = 4096;

/// A stream whose first bytes (a WAV header) are read from a mended copy.
#[derive(Debug)]
pub struct Finished<R> {
    head: Vec<u8>,
    inner: R,
    len: u64,
    pos: u64,
}

impl<R: Read + Seek> Finished<R> {
    /// `inner` as it is, or with its header mended if it is a WAV file
    /// whose RIFF or data size was left at 0.
    ///
    /// # Errors
    /// When `inner` cannot be read or rewound.
    pub fn new(mut inner: R) -> io::Result<Result<Self, R>> {
        let len = inner.seek(SeekFrom::End(0))?;
        inner.seek(SeekFrom::Start(0))?;
        let mut head = Vec::new();
        (&mut inner).take(HEAD_BYTES).read_to_end(&mut head)?;
        inner.seek(SeekFrom::Start(0))?;
        Ok(match mended_head(&head, len) {
            Some(head) => Ok(Self {
                head,
                inner,
                len,
                pos: 0,
            }),
            None => Err(inner),
        })
    }

    /// The stream's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }
}

/// The header up to the `data` chunk's contents, with a RIFF or data size
/// of 0 replaced by what the file holds (the data rounded down to whole
/// frames); `None` when `head` is not such a WAV header.
fn mended_head(head: &[u8], len: u64) -> Option<Vec<u8>> {
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(head.get(at..at + 4)?.try_into().ok()?))
    };
    if head.get(..4)? != b"RIFF" || head.get(8..12)? != b"WAVE" {
        return None;
    }
    let (mut at, mut frame_bytes) = (12, 1);
    while at + 8 <= head.len() {
        let size = word(at + 4)?;
        match &head[at..at + 4] {
            b"fmt " => {
                let align = head.get(at + 20..at + 22)?;
                frame_bytes = u16::from_le_bytes([align[0], align[1]]).max(1) as u64;
            }
            b"data" => {
                let riff = word(4)?;
                if riff != 0 && size != 0 {
                    return None;
                }
                let start = (at + 8) as u64;
                let data = len.checked_sub(start)? / frame_bytes * frame_bytes;
                let fits = |n: u64| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
                let mut mended = head[..at + 8].to_vec();
                if riff == 0 {
                    mended[4..8].copy_from_slice(&fits(len - 8));
                }
                if size == 0 {
                    mended[at + 4..at + 8].copy_from_slice(&fits(data));
                }
                return Some(mended);
            }
            _ => {}
        }
        at += 8 + size as usize + (size & 1) as usize;
    }
    None
}

impl<R: Read + Seek> Read for Finished<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.head.get(self.pos as usize..) {
            Some(rest) if !rest.is_empty() => {
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                n
            }
            _ => {
                self.inner.seek(SeekFrom::Start(self.pos))?;
                self.inner.read(buf)?
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for Finished<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A mono 16-bit WAV of `frames` frames and one torn byte, its sizes
    /// left at 0 as a crashed recorder leaves them.
    fn unfinished(frames: i16) -> Vec<u8> {
        let mut wav = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        wav.extend(16u32.to_le_bytes());
        wav.extend([1, 0, 1, 0]); // PCM, mono
        wav.extend(8_000u32.to_le_bytes());
        wav.extend(16_000u32.to_le_bytes());
        wav.extend([2, 0, 16, 0]); // 2 bytes a frame, 16 bits
        wav.extend(b"data\0\0\0\0");
        wav.extend((0..frames).flat_map(i16::to_le_bytes));
        wav.push(7);
        wav
    }

    #[test]
    fn zero_sizes_become_the_sizes_present_and_the_rest_reads_as_it_was() {
        let wav = unfinished(100);
        let Ok(mut mended) = Finished::new(Cursor::new(wav.clone())).expect("read") else {
            panic!("an unfinished WAV is mended");
        };
        let mut bytes = Vec::new();
        mended.read_to_end(&mut bytes).expect("read");
        assert_eq!(bytes.len(), wav.len());
        assert_eq!(&bytes[4..8], &(wav.len() as u32 - 8).to_le_bytes());
        assert_eq!(&bytes[40..44], &200u32.to_le_bytes());
        assert_eq!(bytes[44..], wav[44..]);
        // Seeks land where they would in the file.
        mended.seek(SeekFrom::Start(40)).expect("seek");
        let mut size = [0; 4];
        mended.read_exact(&mut size).expect("read");
        assert_eq!(size, [200, 0, 0, 0]);
    }

    #[test]
    fn finished_and_foreign_files_pass_through() {
        let mut finished = unfinished(10);
        finished[4..8].copy_from_slice(&48u32.to_le_bytes());
        finished[40..44].copy_from_slice(&20u32.to_le_bytes());
        for bytes in [finished, b"ID3 not a wav".to_vec(), Vec::new()] {
            assert!(Finished::new(Cursor::new(bytes)).expect("read").is_err());
        }
    }
}
