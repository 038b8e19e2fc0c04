//! The whole catalog's postings count of every hash. A gateway sums it from
//! its shards' counts and sends with each round of a query the counts of the
//! hashes the round looks up: each shard then chooses the lookups the whole
//! catalog would (see [`earmark_index::Matcher::count_as`]), and the cluster
//! finds the candidates one node over the whole catalog finds.

use earmark_index::WholeCounts;
use earmark_index::catalog::HASH_BITS;

/// Hashes a shard counts per message: 2^17 counts of 4 bytes, half a
/// megabyte, within NATS's default limit of 1 MB a message.
pub const CHUNK_HASHES: u32 = 1 << 17;
/// Messages a shard's counts take.
pub const CHUNKS: u32 = (1 << HASH_BITS) / CHUNK_HASHES;

const CHUNK_MAGIC: &[u8; 4] = b"EMH1";
const ROUND_MAGIC: &[u8; 4] = b"EMC1";

/// Every hash's postings count in the whole catalog (64 MB).
#[derive(Debug)]
pub struct Census {
    counts: Vec<u32>,
    /// Their sum.
    postings: u64,
    /// Each shard's postings when counted (`u64::MAX` when they changed
    /// while it was counted): what the census is of.
    shards: Vec<u64>,
}

impl Census {
    /// A census of `shards` shards with nothing counted yet.
    pub fn new(shards: u32) -> Self {
        Self {
            counts: vec![0; 1 << HASH_BITS],
            postings: 0,
            shards: vec![0; shards as usize],
        }
    }

    /// Adds `message`, shard `shard`'s (from 1) counts of chunk `chunk` (see
    /// [`encode_chunk`]).
    pub fn add_chunk(&mut self, shard: u32, chunk: u32, message: &[u8]) -> Result<(), String> {
        let body = (message.strip_prefix(CHUNK_MAGIC))
            .filter(|b| b.len() == 8 + CHUNK_HASHES as usize * 4)
            .ok_or("not a shard's counts (EMH1, postings and a chunk of counts)")?;
        let (postings, counts) = body.split_at(8);
        let postings = u64::from_le_bytes(postings.try_into().map_err(|_| "postings")?);
        let k = (shard as usize)
            .checked_sub(1)
            .filter(|&k| k < self.shards.len());
        let k = k.ok_or_else(|| format!("no shard {shard}"))?;
        let first = chunk as usize * CHUNK_HASHES as usize;
        let ours = (self.counts.get_mut(first..first + CHUNK_HASHES as usize))
            .ok_or_else(|| format!("chunk {chunk} is beyond the hash space"))?;
        for (sum, n) in ours.iter_mut().zip(counts.chunks_exact(4)) {
            let n = u32::from_le_bytes([n[0], n[1], n[2], n[3]]);
            *sum = sum.saturating_add(n);
            self.postings += n as u64;
        }
        let seen = &mut self.shards[k];
        *seen = match chunk {
            0 => postings,
            _ if *seen == postings => postings,
            _ => u64::MAX,
        };
        Ok(())
    }

    /// The postings counted.
    pub fn postings(&self) -> u64 {
        self.postings
    }

    /// Whether the shards still hold what was counted, given the postings
    /// each holds now, in shard order.
    pub fn is_current(&self, postings: impl IntoIterator<Item = u64>) -> bool {
        postings.into_iter().eq(self.shards.iter().copied())
    }

    /// The whole catalog's counts of `hashes`.
    pub fn counts_of(&self, hashes: impl IntoIterator<Item = u32>) -> WholeCounts {
        let mut hashes: Vec<u32> = hashes.into_iter().collect();
        hashes.sort_unstable();
        hashes.dedup();
        WholeCounts {
            postings: self.postings,
            counts: (hashes.into_iter())
                .filter_map(|h| Some((h, *self.counts.get(h as usize)?)))
                .filter(|&(_, n)| n > 0)
                .collect(),
        }
    }
}

/// A shard's counts of one chunk of the hash space, with the postings its
/// catalog holds: `EMH1`, postings, counts (little-endian).
pub fn encode_chunk(postings: u64, counts: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + counts.len() * 4);
    out.extend_from_slice(CHUNK_MAGIC);
    out.extend_from_slice(&postings.to_le_bytes());
    out.extend(counts.iter().flat_map(|n| n.to_le_bytes()));
    out
}

/// A round of a query as sent to the shards: `EMC1`, the whole catalog's
/// postings, the number of counts, each count as hash and postings
/// (little-endian), then `query` (see [`super::encode_query`]).
pub fn encode_round(counts: &WholeCounts, query: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + counts.counts.len() * 8 + query.len());
    out.extend_from_slice(ROUND_MAGIC);
    out.extend_from_slice(&counts.postings.to_le_bytes());
    out.extend_from_slice(&(counts.counts.len() as u32).to_le_bytes());
    for &(hash, n) in &counts.counts {
        out.extend_from_slice(&hash.to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(query);
    out
}

/// The counts and the query of a round [`encode_round`] sent.
pub fn decode_round(bytes: &[u8]) -> Result<(WholeCounts, &[u8]), String> {
    let bad = "not a round of a query (EMC1, counts and the query)";
    let body = bytes.strip_prefix(ROUND_MAGIC).ok_or(bad)?;
    let (head, body) = body.split_at_checked(12).ok_or(bad)?;
    let postings = u64::from_le_bytes(head[..8].try_into().map_err(|_| bad)?);
    let n = u32::from_le_bytes(head[8..].try_into().map_err(|_| bad)?) as usize;
    let (counts, query) = body.split_at_checked(n.saturating_mul(8)).ok_or(bad)?;
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let counts: Vec<(u32, u32)> = (counts.chunks_exact(8))
        .map(|c| (word(&c[..4]), word(&c[4..])))
        .collect();
    if !counts.is_sorted_by(|a, b| a.0 < b.0) {
        return Err("counts out of hash order".into());
    }
    Ok((WholeCounts { postings, counts }, query))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_census_sums_the_shards_and_knows_when_they_change() {
        let mut census = Census::new(2);
        let mut a = vec![0u32; CHUNK_HASHES as usize];
        let mut b = a.clone();
        (a[5], b[5], b[7]) = (3, 4, 1);
        census.add_chunk(1, 1, &encode_chunk(900, &a)).unwrap();
        census.add_chunk(2, 1, &encode_chunk(500, &b)).unwrap();
        let first = CHUNK_HASHES;
        let counts = census.counts_of([first + 7, first + 5, first + 6, first + 5]);
        assert_eq!(counts.counts, [(first + 5, 7), (first + 7, 1)]);
        assert_eq!(counts.postings, 8);
        // Chunk 1 alone was counted: chunk 0 sets what it is of.
        assert!(!census.is_current([900, 500]));
        census.add_chunk(1, 0, &encode_chunk(900, &a)).unwrap();
        census.add_chunk(2, 0, &encode_chunk(500, &b)).unwrap();
        census.add_chunk(2, 1, &encode_chunk(500, &b)).unwrap();
        assert!(census.is_current([900, 500]));
        assert!(!census.is_current([900, 510]));
        // A shard that changed between its chunks is not current either way.
        census.add_chunk(1, 2, &encode_chunk(901, &a)).unwrap();
        assert!(!census.is_current([900, 500]) && !census.is_current([901, 500]));
        assert!(census.add_chunk(1, CHUNKS, &encode_chunk(900, &a)).is_err());
        assert!(census.add_chunk(3, 0, &encode_chunk(900, &a)).is_err());
        assert!(census.add_chunk(1, 0, b"EMH1short").is_err());
    }

    #[test]
    fn a_round_carries_its_counts_and_query() {
        let counts = WholeCounts {
            postings: 1 << 40,
            counts: vec![(3, 9), (70_000, 1)],
        };
        let sent = encode_round(&counts, b"EMQ1rest");
        assert_eq!(decode_round(&sent).unwrap(), (counts, &b"EMQ1rest"[..]));
        assert!(decode_round(&sent[..20]).is_err());
        assert!(decode_round(b"EMQ1").is_err());
        let unsorted = WholeCounts {
            postings: 1,
            counts: vec![(9, 1), (3, 1)],
        };
        assert!(decode_round(&encode_round(&unsorted, b"")).is_err());
    }
}
