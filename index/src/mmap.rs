//! Read-only memory maps: the one place in the index that needs `unsafe`.

use std::fs::File;
use std::path::Path;

use crate::error::{Result, io};

/// A read-only map of a whole file.
#[derive(Debug)]
pub struct Mapped(memmap2::Mmap);

impl Mapped {
    /// Maps `path` read-only.
    ///
    /// # Errors
    /// [`crate::Error::Io`] if the file cannot be opened or mapped.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(io(path))?;
        #[allow(unsafe_code)]
        // SAFETY: catalog files are written once under a temporary name, synced
        // and renamed into place; they are never modified afterwards, only
        // deleted after a newer manifest stops naming them. A mapping therefore
        // never sees its bytes change underneath it.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io(path))?;
        Ok(Self(map))
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}
