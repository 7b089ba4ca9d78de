//! Plain tables for the terminal (aligned columns) and as CSV, and the output choices the
//! indicator commands share (`--format`, `--out`).

use anyhow::{Context as _, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Output format of `rcpfed query observations` and `rcpfed report coherence`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns, for reading in a terminal.
    Table,
    /// CSV with a header row (RFC 4180).
    Csv,
    /// JSON (protobuf JSON mapping: lowerCamelCase names, 64-bit integers as strings).
    Json,
}

/// A table: a header and rows of cells.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// Column titles.
    pub header: Vec<String>,
    /// Rows; each as long as the header (shorter rows are padded with empty cells).
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column titles.
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn push<S: Into<String>>(&mut self, row: impl IntoIterator<Item = S>) {
        self.rows.push(row.into_iter().map(Into::into).collect());
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as aligned text: the header, a rule, then the rows, columns separated by two
    /// spaces, each line indented by `indent` and without trailing spaces. Widths count
    /// characters, not bytes.
    pub fn render(&self, indent: &str) -> String {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain(std::iter::once(self.header.len()))
            .max()
            .unwrap_or(0);
        fn cell(row: &[String], i: usize) -> &str {
            row.get(i).map(String::as_str).unwrap_or("")
        }
        let mut widths = vec![0usize; columns];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, w) in widths.iter_mut().enumerate() {
                *w = (*w).max(cell(row, i).chars().count());
            }
        }
        let line = |row: &[String]| {
            let mut text = String::from(indent);
            for (i, w) in widths.iter().enumerate() {
                let c = cell(row, i);
                text.push_str(c);
                if i + 1 < columns {
                    text.extend(std::iter::repeat_n(' ', w - c.chars().count() + 2));
                }
            }
            text.truncate(text.trim_end().len());
            text
        };
        let mut out = line(&self.header);
        out.push('\n');
        let rule: Vec<String> = widths.iter().map(|w| "─".repeat(*w)).collect();
        out.push_str(&line(&rule));
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        out
    }

    /// The table as CSV, header first.
    pub fn to_csv(&self) -> Result<String> {
        let mut w = csv::WriterBuilder::new()
            .flexible(true)
            .from_writer(Vec::new());
        w.write_record(&self.header)?;
        for row in &self.rows {
            w.write_record(row)?;
        }
        let bytes = w
            .into_inner()
            .map_err(|e| anyhow::anyhow!("writing CSV: {e}"))?;
        Ok(String::from_utf8(bytes)?)
    }
}

/// Where the output goes: standard output, or a file written whole (through a temporary file
/// renamed into place, so a failed command leaves no half file).
pub struct Output {
    path: Option<PathBuf>,
    tmp: Option<PathBuf>,
    writer: Box<dyn Write>,
}

impl Output {
    /// Standard output when `path` is None, otherwise `path`.
    pub fn open(path: Option<&Path>) -> Result<Self> {
        match path {
            None => Ok(Output {
                path: None,
                tmp: None,
                writer: Box::new(std::io::BufWriter::new(std::io::stdout())),
            }),
            Some(path) => {
                let tmp = partial_path(path);
                let file = std::fs::File::create(&tmp)
                    .with_context(|| format!("cannot create {}", tmp.display()))?;
                Ok(Output {
                    path: Some(path.to_path_buf()),
                    tmp: Some(tmp),
                    writer: Box::new(std::io::BufWriter::new(file)),
                })
            }
        }
    }

    /// Whether the output is a file.
    pub fn is_file(&self) -> bool {
        self.path.is_some()
    }

    /// Flushes, and moves a file into place.
    pub fn finish(mut self) -> Result<()> {
        self.writer.flush().context("writing the output")?;
        if let (Some(tmp), Some(path)) = (self.tmp.take(), &self.path) {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("moving {} to {}", tmp.display(), path.display()))?;
        }
        Ok(())
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        // Not finished: remove the partial file.
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// `FILE.partial` next to `FILE`.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn aligns_columns_by_characters_and_trims_trailing_space() {
        let mut t = Table::new(["NODE", "VALUE", "UNIT"]);
        t.push(["colombo", "275 ×10^6", "persons"]);
        t.push(["abu-dhabi", "281 ×10^6", ""]);
        let text = t.render("  ");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "  NODE       VALUE      UNIT");
        assert_eq!(lines[1], "  ─────────  ─────────  ───────");
        assert_eq!(lines[2], "  colombo    275 ×10^6  persons");
        assert_eq!(lines[3], "  abu-dhabi  281 ×10^6");
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let mut t = Table::new(["a", "b"]);
        t.push(["x, y", "say \"hi\""]);
        assert_eq!(t.to_csv().unwrap(), "a,b\n\"x, y\",\"say \"\"hi\"\"\"\n");
    }

    #[test]
    fn a_file_output_appears_only_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let mut out = Output::open(Some(&path)).unwrap();
        out.write_all(b"a\n").unwrap();
        assert!(!path.exists());
        out.finish().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\n");
        let mut out = Output::open(Some(&dir.path().join("failed.csv"))).unwrap();
        out.write_all(b"a\n").unwrap();
        drop(out);
        assert!(!dir.path().join("failed.csv").exists());
        assert!(!dir.path().join("failed.csv.partial").exists());
    }
}
