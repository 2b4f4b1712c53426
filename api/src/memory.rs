//! Memory and disk sizes as users write them: `256M`, `1G`, `512m`, `1024MB`.

use std::fmt;
use std::str::FromStr;

/// A size in mebibytes, between 1 MiB and 1 TiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemorySize(u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("size {0:?} is invalid: write a whole number with a unit, such as 256M or 1G")]
pub struct MemorySizeError(String);

impl MemorySize {
    const MAX_MB: u64 = 1024 * 1024;

    pub fn from_mb(mb: u64) -> Result<Self, MemorySizeError> {
        if (1..=Self::MAX_MB).contains(&mb) {
            Ok(MemorySize(mb))
        } else {
            Err(MemorySizeError(format!("{mb}M")))
        }
    }

    pub fn parse(s: &str) -> Result<Self, MemorySizeError> {
        let err = || MemorySizeError(s.chars().take(40).collect());
        let t = s.trim();
        let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(digits_end);
        let n: u64 = num.parse().map_err(|_| err())?;
        let mb = match unit.to_ascii_uppercase().as_str() {
            "M" | "MB" => Some(n),
            "G" | "GB" => n.checked_mul(1024),
            _ => None,
        }
        .ok_or_else(err)?;
        Self::from_mb(mb).map_err(|_| err())
    }

    pub fn mb(self) -> u64 {
        self.0
    }

    pub fn bytes(self) -> u64 {
        self.0 * 1024 * 1024
    }
}

impl FromStr for MemorySize {
    type Err = MemorySizeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Formats as Cloud Foundry's `MEMORY_LIMIT` does: `256m`.
impl fmt::Display for MemorySize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}m", self.0)
    }
}

impl serde::Serialize for MemorySize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for MemorySize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mb = u64::deserialize(d)?;
        MemorySize::from_mb(mb).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cf_style_sizes() {
        assert_eq!(MemorySize::parse("256M").unwrap().mb(), 256);
        assert_eq!(MemorySize::parse("256m").unwrap().mb(), 256);
        assert_eq!(MemorySize::parse("1G").unwrap().mb(), 1024);
        assert_eq!(MemorySize::parse("2gb").unwrap().mb(), 2048);
        assert_eq!(MemorySize::parse("64MB").unwrap().to_string(), "64m");
    }

    #[test]
    fn refuses_nonsense() {
        for bad in [
            "",
            "M",
            "12",
            "0M",
            "-1M",
            "1.5G",
            "99999999999999999999G",
            "1T",
        ] {
            assert!(MemorySize::parse(bad).is_err(), "{bad:?}");
        }
    }
}
