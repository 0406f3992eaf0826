//! Where the trap plane's post-block sites sit in a model: configurable per model, with the
//! default of the mechanisms issue — after the first block, every k blocks, and after the last
//! block (right before the head).
//!
//! A spec is a comma-separated list: `first`, `last` (before the head), `every:K` (blocks 0, K,
//! 2K, …), or a block index. `default` is `first,every:max(n/4,1),last`.

/// A trap-site spec (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrapSites {
    first: bool,
    last: bool,
    every: Option<usize>,
    /// `every:max(n/4,1)` (the default's period, which depends on the model).
    quarter: bool,
    blocks: Vec<usize>,
}

/// A spec that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("trap sites {spec:?}: {reason}")]
pub struct TrapSitesError {
    /// The spec.
    pub spec: String,
    /// What is wrong.
    pub reason: String,
}

impl Default for TrapSites {
    fn default() -> TrapSites {
        TrapSites {
            first: true,
            last: true,
            every: None,
            quarter: true,
            blocks: Vec::new(),
        }
    }
}

impl TrapSites {
    /// Parses a spec (`default`, or `first`, `last`, `every:K`, block indices, comma-separated).
    pub fn parse(spec: &str) -> Result<TrapSites, TrapSitesError> {
        let err = |reason: String| TrapSitesError {
            spec: spec.to_owned(),
            reason,
        };
        let mut t = TrapSites {
            first: false,
            last: false,
            every: None,
            quarter: false,
            blocks: Vec::new(),
        };
        let mut default = false;
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "default" => default = true,
                "first" => t.first = true,
                "last" | "head" => t.last = true,
                _ => {
                    if let Some(k) = part.strip_prefix("every:") {
                        let k: usize = k
                            .parse()
                            .map_err(|_| err(format!("{part:?}: K must be a positive integer")))?;
                        if k == 0 {
                            return Err(err("every:0 is not a period".to_owned()));
                        }
                        t.every = Some(k);
                    } else {
                        let b: usize = part.parse().map_err(|_| {
                            err(format!(
                                "{part:?} is not first, last, every:K or a block index"
                            ))
                        })?;
                        t.blocks.push(b);
                    }
                }
            }
        }
        if default {
            t.first = true;
            t.last = true;
            t.quarter = true;
        }
        if !t.first && !t.last && t.every.is_none() && t.blocks.is_empty() && !default {
            return Err(err("no site".to_owned()));
        }
        Ok(t)
    }

    /// The blocks after which the sites sit in a model of `n_layer` blocks, ascending, without
    /// duplicates; block indices beyond the model are an error.
    pub fn layers(&self, n_layer: usize) -> Result<Vec<usize>, TrapSitesError> {
        if let Some(&b) = self.blocks.iter().find(|&&b| b >= n_layer) {
            return Err(TrapSitesError {
                spec: format!("{self:?}"),
                reason: format!("block {b} does not exist (the model has {n_layer})"),
            });
        }
        let mut v: Vec<usize> = self.blocks.clone();
        if n_layer == 0 {
            return Ok(Vec::new());
        }
        let every = match self.every {
            Some(k) => Some(k),
            // The default period: four sites over the depth.
            None if self.quarter => Some((n_layer / 4).max(1)),
            None => None,
        };
        if let Some(k) = every {
            v.extend((0..n_layer).step_by(k));
        }
        if self.first {
            v.push(0);
        }
        if self.last {
            v.push(n_layer - 1);
        }
        v.sort_unstable();
        v.dedup();
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_first_every_quarter_and_last() {
        let d = TrapSites::default();
        assert_eq!(d.layers(30).unwrap(), [0, 7, 14, 21, 28, 29]);
        assert_eq!(d.layers(2).unwrap(), [0, 1]);
        assert_eq!(
            TrapSites::parse("default").unwrap().layers(24).unwrap(),
            [0, 6, 12, 18, 23]
        );
    }

    #[test]
    fn specs_parse_and_bad_ones_are_errors() {
        assert_eq!(
            TrapSites::parse("first,12").unwrap().layers(24).unwrap(),
            [0, 12]
        );
        assert_eq!(
            TrapSites::parse("every:8,last")
                .unwrap()
                .layers(24)
                .unwrap(),
            [0, 8, 16, 23]
        );
        assert_eq!(TrapSites::parse("head").unwrap().layers(5).unwrap(), [4]);
        assert_eq!(
            TrapSites::parse("first,last").unwrap().layers(24).unwrap(),
            [0, 23]
        );
        for bad in ["", "every:0", "every:x", "middle", "-1"] {
            assert!(TrapSites::parse(bad).is_err(), "{bad:?}");
        }
        assert!(TrapSites::parse("40").unwrap().layers(30).is_err());
    }
}
