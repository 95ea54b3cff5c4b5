//! A set of CPU or memory-node numbers, read and printed in the kernel's list
//! format (`0-3,8`), as in `cpuset.cpus`, `Cpus_allowed_list` and Slurm's
//! core lists.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// A set of CPU (or NUMA node) numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CpuSet(BTreeSet<u32>);

/// A list that is not in the kernel's `0-3,8` format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{text}' is not a CPU list like 0-3,8: {reason}")]
pub struct ParseError {
    pub text: String,
    pub reason: String,
}

/// The largest number berth accepts in a list: far above any real CPU count,
/// low enough that a typo like `0-99999999` is an error, not a huge set.
const MAX_ID: u32 = 1 << 20;

impl CpuSet {
    pub fn new() -> CpuSet {
        CpuSet::default()
    }

    /// Parses `0-3,8` (white space around the list, e.g. a trailing newline
    /// from a cgroup file, is ignored; an empty list is the empty set).
    pub fn parse(text: &str) -> Result<CpuSet, ParseError> {
        let err = |reason: String| ParseError {
            text: text.trim().to_string(),
            reason,
        };
        let mut set = BTreeSet::new();
        for part in text.trim().split(',').filter(|p| !p.is_empty()) {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a, b),
                None => (part, part),
            };
            let num = |s: &str| -> Result<u32, ParseError> {
                let n: u32 = s
                    .trim()
                    .parse()
                    .map_err(|_| err(format!("'{s}' is not a number")))?;
                if n > MAX_ID {
                    return Err(err(format!("{n} is larger than {MAX_ID}")));
                }
                Ok(n)
            };
            let (lo, hi) = (num(lo)?, num(hi)?);
            if lo > hi {
                return Err(err(format!("range {part} runs backwards")));
            }
            set.extend(lo..=hi);
        }
        Ok(CpuSet(set))
    }

    pub fn contains(&self, id: u32) -> bool {
        self.0.contains(&id)
    }

    pub fn insert(&mut self, id: u32) {
        self.0.insert(id);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }

    pub fn first(&self) -> Option<u32> {
        self.0.first().copied()
    }

    pub fn is_subset(&self, other: &CpuSet) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn union(&self, other: &CpuSet) -> CpuSet {
        CpuSet(self.0.union(&other.0).copied().collect())
    }

    pub fn intersection(&self, other: &CpuSet) -> CpuSet {
        CpuSet(self.0.intersection(&other.0).copied().collect())
    }

    /// The members of `self` that are not in `other`.
    pub fn difference(&self, other: &CpuSet) -> CpuSet {
        CpuSet(self.0.difference(&other.0).copied().collect())
    }
}

impl FromIterator<u32> for CpuSet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> CpuSet {
        CpuSet(iter.into_iter().collect())
    }
}

impl FromStr for CpuSet {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<CpuSet, ParseError> {
        CpuSet::parse(s)
    }
}

/// The kernel's list format; the empty set prints as an empty string, as in
/// an unset `cpuset.cpus`.
impl fmt::Display for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids = self.0.iter().copied().peekable();
        let mut first = true;
        while let Some(lo) = ids.next() {
            let mut hi = lo;
            while ids.peek() == Some(&(hi + 1)) {
                hi += 1;
                ids.next();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

impl serde::Serialize for CpuSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for CpuSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<CpuSet, D::Error> {
        let text = String::deserialize(d)?;
        CpuSet::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> CpuSet {
        CpuSet::parse(s).unwrap()
    }

    #[test]
    fn parses_and_prints_kernel_lists() {
        for text in ["", "0", "0-3", "0-3,8", "1,3,5", "0-1,4-7,12"] {
            assert_eq!(set(text).to_string(), text);
        }
        assert_eq!(set("0-3,8\n").len(), 5);
        assert_eq!(set("3,1,2").to_string(), "1-3");
        assert_eq!(set("0,0-1").to_string(), "0-1");
    }

    #[test]
    fn bad_lists_name_the_text_and_the_problem() {
        let e = CpuSet::parse("0-x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "'0-x' is not a CPU list like 0-3,8: 'x' is not a number"
        );
        assert!(CpuSet::parse("3-1")
            .unwrap_err()
            .reason
            .contains("backwards"));
        assert!(CpuSet::parse("0-99999999").is_err());
        assert!(CpuSet::parse("a").is_err());
    }

    #[test]
    fn set_algebra() {
        let a = set("0-3");
        let b = set("2-5");
        assert_eq!(a.union(&b), set("0-5"));
        assert_eq!(a.intersection(&b), set("2-3"));
        assert_eq!(a.difference(&b), set("0-1"));
        assert!(set("1-2").is_subset(&a));
        assert!(!b.is_subset(&a));
        assert!(CpuSet::new().is_subset(&a));
        assert_eq!(set("4,7").first(), Some(4));
    }

    #[test]
    fn serializes_as_a_list_string() {
        let json = serde_json::to_string(&set("0-2,7")).unwrap();
        assert_eq!(json, "\"0-2,7\"");
        let back: CpuSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back, set("0-2,7"));
        assert!(serde_json::from_str::<CpuSet>("\"x\"").is_err());
    }
}
