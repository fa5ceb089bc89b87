//! The results file: one record per line, `kind<TAB>key=value<TAB>…` (tabs, newlines
//! and backslashes in values escaped), appended as each measurement ends, so a run that
//! stops half way keeps what it measured and `report` can render it again.
//!
//! Kinds: `meta` (the machine, the load, the commit, the volume), `run` (one system at
//! one N in one phase, its `phase` field: `latency`, `throughput`, or none or `only` for a
//! one-phase run), `cost` (one round's cost through a mount).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use crate::{Ctx, R};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    pub kind: String,
    pub fields: Vec<(String, String)>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n")
}

fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut it = v.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}

impl Record {
    pub fn new(kind: &str) -> Record {
        Record { kind: kind.into(), fields: Vec::new() }
    }

    pub fn set(&mut self, key: &str, value: impl ToString) -> &mut Record {
        let value = value.to_string();
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some(f) => f.1 = value,
            None => self.fields.push((key.into(), value)),
        }
        self
    }

    /// Set `key` only when there is a value.
    pub fn opt(&mut self, key: &str, value: Option<impl ToString>) -> &mut Record {
        if let Some(v) = value {
            self.set(key, v);
        }
        self
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn num(&self, key: &str) -> Option<f64> {
        self.get(key)?.parse().ok()
    }

    pub fn to_line(&self) -> String {
        let mut s = escape(&self.kind);
        for (k, v) in &self.fields {
            s.push('\t');
            s.push_str(&escape(k));
            s.push('=');
            s.push_str(&escape(v));
        }
        s
    }

    pub fn from_line(line: &str) -> Option<Record> {
        let mut parts = line.split('\t');
        let kind = unescape(parts.next()?);
        if kind.is_empty() {
            return None;
        }
        let mut r = Record::new(&kind);
        for p in parts {
            let (k, v) = p.split_once('=')?;
            r.fields.push((unescape(k), unescape(v)));
        }
        Some(r)
    }

    /// Append this record to the results file.
    pub fn append_to(&self, path: &Path) -> R<()> {
        let mut f = OpenOptions::new().create(true).append(true).open(path).ctx("opening the results file")?;
        writeln!(f, "{}", self.to_line()).ctx("writing the results file")
    }
}

pub fn read_all(text: &str) -> R<Vec<Record>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| Record::from_line(l).ok_or_else(|| format!("results line {}: not a record: {l:?}", i + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_tabs_newlines_and_backslashes() {
        let mut r = Record::new("meta");
        r.set("volume", "Volume Name: x\n\tperformance.quick-read: on\\").set("n", 3);
        let line = r.to_line();
        assert!(!line.contains('\n'));
        assert_eq!(Record::from_line(&line), Some(r.clone()));
        assert_eq!(r.num("n"), Some(3.0));
        assert!(read_all("meta\tbroken").is_err());
    }
}
