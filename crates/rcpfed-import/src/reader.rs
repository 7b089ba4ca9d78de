//! The CSV reading engine shared by both indicator formats, and the streaming API.
//!
//! Records are read as byte records (no per-field allocation) from any [`Read`]. The engine
//! knows the exact 1-based line every record starts on, even after the blank lines the `csv`
//! crate skips and inside files with quoted line breaks, so that every observation can be
//! traced back to its line.

use crate::ImportError;
use crate::columns::CsvFormat;
use crate::row::{Header, fill_defaults, parse_header, parse_row, parse_row_all};
use crate::sdmx;
use rcpfed_proto::v1::Observation;
use std::collections::BTreeMap;
use std::io::{self, Read};

const BOM: &[u8] = b"\xEF\xBB\xBF";
/// Bytes read ahead to find the header line before the format is known.
const MAX_PEEK: usize = 1 << 20;
/// The window of bytes kept for line numbers is compacted once this much of it is behind.
const COMPACT_AT: usize = 1 << 16;

/// Which format to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// SDMX-CSV if the header starts with STRUCTURE, the simple format otherwise.
    Auto,
    Simple,
    Sdmx,
}

/// A reader that remembers the bytes it has handed to the CSV parser since the start of the
/// current record, so that the line a record starts on can be found after the blank lines
/// `csv` skips. It also strips a UTF-8 byte order mark and reads the first line ahead, so the
/// format and the SDMX-CSV field separator can be detected before parsing starts.
pub(crate) struct Source<R> {
    inner: R,
    /// Bytes read ahead of the parser (the first line), served before `inner`.
    pending: Vec<u8>,
    pending_pos: usize,
    /// Bytes handed to the parser from offset `window_start` on.
    window: Vec<u8>,
    window_start: u64,
    /// The input has ended (a read returned nothing).
    exhausted: bool,
}

impl<R: Read> Source<R> {
    fn new(mut inner: R) -> io::Result<Self> {
        let mut pending = Vec::new();
        let mut chunk = [0u8; 8192];
        while !first_line_complete(&pending) && pending.len() < MAX_PEEK {
            match inner.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => pending.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let pending_pos = if pending.starts_with(BOM) {
            BOM.len()
        } else {
            0
        };
        Ok(Source {
            inner,
            pending,
            pending_pos,
            window: Vec::new(),
            window_start: 0,
            exhausted: false,
        })
    }

    /// The bytes read ahead, before parsing starts (the BOM removed).
    fn prefix(&self) -> &[u8] {
        self.pending.get(self.pending_pos..).unwrap_or_default()
    }

    /// The 1-based line of the record `csv` reports at (`byte`, `line`): `csv` reports the
    /// position before the blank lines it skipped, so skip them here.
    fn line_at(&self, byte: u64, line: u64) -> usize {
        let skipped = byte
            .checked_sub(self.window_start)
            .and_then(|off| usize::try_from(off).ok())
            .and_then(|off| self.window.get(off..))
            .map_or(0, |rest| {
                rest.iter()
                    .take_while(|&&b| b == b'\n' || b == b'\r')
                    .filter(|&&b| b == b'\n')
                    .count()
            });
        usize::try_from(line)
            .unwrap_or(usize::MAX)
            .saturating_add(skipped)
    }

    /// Whether the record in bytes `start..end` ends inside a quoted field (RFC 4180: a field
    /// opened by '"' ends at a '"' not followed by another '"').
    fn ends_inside_quotes(&self, start: u64, end: u64, delimiter: u8) -> bool {
        let range = |b: u64| {
            b.checked_sub(self.window_start)
                .and_then(|off| usize::try_from(off).ok())
        };
        let (Some(from), Some(to)) = (range(start), range(end)) else {
            return false;
        };
        let Some(bytes) = self.window.get(from..to.min(self.window.len())) else {
            return false;
        };
        let mut quoted = false;
        let mut field_start = true;
        let mut iter = bytes.iter().peekable();
        while let Some(&b) = iter.next() {
            if quoted {
                if b == b'"' {
                    if iter.peek() == Some(&&b'"') {
                        iter.next();
                    } else {
                        quoted = false;
                    }
                }
                continue;
            }
            if field_start && b == b'"' {
                quoted = true;
            }
            field_start = b == delimiter || b == b'\n' || b == b'\r';
        }
        quoted
    }

    /// Forgets the bytes before `byte` (amortised: only once enough of them piled up).
    fn discard_before(&mut self, byte: u64) {
        let Some(behind) = byte
            .checked_sub(self.window_start)
            .and_then(|n| usize::try_from(n).ok())
        else {
            return;
        };
        let behind = behind.min(self.window.len());
        if behind >= COMPACT_AT && behind * 2 >= self.window.len() {
            self.window.drain(..behind);
            self.window_start += behind as u64;
        }
    }
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = if let Some(rest) = self
            .pending
            .get(self.pending_pos..)
            .filter(|r| !r.is_empty())
        {
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            self.pending_pos += n;
            if self.pending_pos >= self.pending.len() {
                self.pending = Vec::new();
                self.pending_pos = 0;
            }
            n
        } else {
            self.inner.read(buf)?
        };
        if n == 0 && !buf.is_empty() {
            self.exhausted = true;
        }
        self.window.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

/// Whether `buf` holds a whole first non-blank line.
fn first_line_complete(buf: &[u8]) -> bool {
    let buf = buf.strip_prefix(BOM).unwrap_or(buf);
    buf.iter()
        .position(|b| !b.is_ascii_whitespace())
        .is_some_and(|start| buf[start..].contains(&b'\n'))
}

/// One observation read from a row.
pub(crate) struct Row<'a> {
    /// 1-based line the row starts on.
    pub(crate) line: usize,
    /// The indicator code, borrowed from the row.
    pub(crate) indicator: &'a str,
    pub(crate) observation: Observation,
}

/// Reads rows of either format from any reader.
pub(crate) struct Engine<R: Read> {
    csv: csv::Reader<Source<R>>,
    record: csv::ByteRecord,
    delimiter: u8,
    pub(crate) header: Header,
}

fn read_error(e: &csv::Error, line: usize) -> ImportError {
    let message = match e.kind() {
        csv::ErrorKind::Io(io) => format!("could not read the file: {io}"),
        _ => format!("not readable as CSV: {e}"),
    };
    ImportError::at_line(line, message)
}

/// Whether every cell of the record is empty or white space.
fn is_blank(record: &csv::ByteRecord) -> bool {
    // Fast answer for the usual row: some visible ASCII character.
    if record.as_slice().iter().any(|b| b.is_ascii_graphic()) {
        return false;
    }
    record
        .iter()
        .all(|f| std::str::from_utf8(f).is_ok_and(|s| s.trim().is_empty()))
}

impl<R: Read> Engine<R> {
    /// Reads up to the header row and parses it.
    pub(crate) fn new(inner: R, mode: Mode) -> Result<Self, ImportError> {
        let source = Source::new(inner)
            .map_err(|e| ImportError::file(format!("could not read the file: {e}")))?;
        let detected = sdmx::detect(source.prefix());
        let (format, delimiter) = match (mode, detected) {
            (Mode::Simple, _) | (Mode::Auto, None) => (CsvFormat::Simple, b','),
            (Mode::Auto | Mode::Sdmx, Some(d)) => (CsvFormat::SdmxCsv, d),
            // Not an SDMX-CSV header: parse_header says why.
            (Mode::Sdmx, None) => (CsvFormat::SdmxCsv, b','),
        };
        let csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .buffer_capacity(1 << 16)
            .from_reader(source);
        let mut engine = Engine {
            csv,
            record: csv::ByteRecord::new(),
            delimiter,
            header: Header::placeholder(),
        };
        loop {
            let line = engine.read_record()?.ok_or_else(|| {
                ImportError::file("the file is empty; a header row naming the columns is required")
            })?;
            if is_blank(&engine.record) {
                continue;
            }
            engine.header = parse_header(&engine.record, line, format, delimiter)?;
            return Ok(engine);
        }
    }

    /// Reads the next record; returns the line it starts on, `None` at the end.
    fn read_record(&mut self) -> Result<Option<usize>, ImportError> {
        let current = self.csv.position().clone();
        let more = self.csv.read_byte_record(&mut self.record).map_err(|e| {
            let line = self.csv.get_ref().line_at(current.byte(), current.line());
            read_error(&e, line)
        })?;
        if !more {
            return Ok(None);
        }
        let line = self
            .record
            .position()
            .map_or(0, |p| self.csv.get_ref().line_at(p.byte(), p.line()));
        let end = self.csv.position().byte();
        // The `csv` crate ends a quoted field left open at the end of the file silently,
        // taking the rest of the file as its value; refuse it instead. Only the record that
        // reaches the end of the input can be cut off that way, so only it is scanned.
        let source = self.csv.get_ref();
        if source.exhausted && end >= source.window_start + source.window.len() as u64 {
            let start = self.record.position().map_or(end, |p| p.byte());
            if source.ends_inside_quotes(start, end, self.delimiter) {
                return Err(ImportError::at_line(
                    line,
                    "a quoted field is never closed: the quote opened on this line runs to the end of the file; add the closing '\"'",
                ));
            }
        }
        self.csv.get_mut().discard_before(end);
        Ok(Some(line))
    }

    /// The format being read.
    pub(crate) fn format(&self) -> CsvFormat {
        self.header.format
    }

    /// Bytes read so far (after a byte order mark).
    pub(crate) fn bytes_read(&self) -> u64 {
        self.csv.position().byte()
    }

    /// The next observation, read into `obs` (its strings are reused): its line and
    /// indicator code; `None` at the end of the file. Blank rows are skipped.
    pub(crate) fn next_row_into(
        &mut self,
        obs: &mut Observation,
    ) -> Result<Option<(usize, &str)>, ImportError> {
        loop {
            let Some(line) = self.read_record()? else {
                return Ok(None);
            };
            if is_blank(&self.record) {
                continue;
            }
            let indicator = parse_row(&self.header, &self.record, line, obs)?;
            return Ok(Some((line, indicator)));
        }
    }

    /// The next row into `obs`, like [`Engine::next_row_into`], except that a row with
    /// problems does not end the reading: they are added to `problems` and the row comes back
    /// without its indicator. `Err` only when the file cannot be read on (not CSV there).
    pub(crate) fn next_row_checked(
        &mut self,
        obs: &mut Observation,
        problems: &mut Vec<ImportError>,
    ) -> Result<Option<(usize, Option<&str>)>, ImportError> {
        loop {
            let Some(line) = self.read_record()? else {
                return Ok(None);
            };
            if is_blank(&self.record) {
                continue;
            }
            let before = problems.len();
            let indicator = parse_row_all(&self.header, &self.record, line, obs, problems);
            return Ok(Some((line, indicator.filter(|_| problems.len() == before))));
        }
    }

    /// The next observation; `None` at the end of the file. Blank rows are skipped.
    pub(crate) fn next_row(&mut self) -> Result<Option<Row<'_>>, ImportError> {
        let mut observation = Observation::default();
        Ok(self
            .next_row_into(&mut observation)?
            .map(|(line, indicator)| Row {
                line,
                indicator,
                observation,
            }))
    }
}

/// A batch of consecutive observations of one indicator, read by [`IndicatorCsvBatches`] or
/// [`read_indicator_csv_streaming`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservationBatch {
    /// The indicator code (the same for every batch of one file).
    pub indicator: String,
    /// Index of `observations[0]` in the whole snapshot (`indicator_snapshot.observations[i]`).
    pub first_index: usize,
    /// The observations, in file order.
    pub observations: Vec<Observation>,
    /// The 1-based line of each observation (parallel to `observations`).
    pub lines: Vec<usize>,
}

impl ObservationBatch {
    /// [`fill_defaults`] on this batch's observations; returns how many got a default.
    pub fn fill_defaults(&mut self, catalogue: &rcpfed_core::catalogue::Catalogue) -> usize {
        fill_defaults(catalogue, &self.indicator, &mut self.observations)
    }
}

/// What [`read_indicator_csv_streaming`] read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSummary {
    /// The format of the file.
    pub format: CsvFormat,
    /// The indicator code.
    pub indicator: String,
    /// Observations read.
    pub observations: usize,
    /// Batches handed over.
    pub batches: usize,
}

/// Reads a large indicator CSV file of either format in batches of at most `batch`
/// observations, without holding the file or the snapshot in memory.
///
/// A streamed file is **one snapshot**: every row must have the same indicator code (a file
/// that mixes indicators is refused at the first row of a second one; split it, or read it
/// whole with [`crate::parse_any_indicator_csv`]). Rows are checked as by the whole-file
/// parsers, with the same errors naming line and column; an error ends the iteration.
///
/// ```
/// # fn main() -> Result<(), rcpfed_import::ImportError> {
/// let csv = "INDICATOR,REF_AREA,TIME_PERIOD,OBS_VALUE\nMIG_STOCK,LKA,2020,1\nMIG_STOCK,LKA,2021,2\n";
/// let mut n = 0;
/// for batch in rcpfed_import::IndicatorCsvBatches::new(csv.as_bytes(), 1)? {
///     let batch = batch?;
///     assert_eq!(batch.indicator, "MIG_STOCK");
///     n += batch.observations.len();
/// }
/// assert_eq!(n, 2);
/// # Ok(()) }
/// ```
pub struct IndicatorCsvBatches<R: Read> {
    engine: Engine<R>,
    batch: usize,
    /// The indicator of the first row and its line.
    first: Option<(String, usize)>,
    count: usize,
    done: bool,
}

impl<R: Read> IndicatorCsvBatches<R> {
    /// Reads the header (detecting the format: SDMX-CSV when the first column is STRUCTURE)
    /// and prepares to read batches of at most `batch` observations (at least 1).
    pub fn new(reader: R, batch: usize) -> Result<Self, ImportError> {
        Ok(IndicatorCsvBatches {
            engine: Engine::new(reader, Mode::Auto)?,
            batch: batch.max(1),
            first: None,
            count: 0,
            done: false,
        })
    }

    /// The format of the file.
    pub fn format(&self) -> CsvFormat {
        self.engine.format()
    }

    /// Bytes of the file read so far, for progress reports.
    pub fn bytes_read(&self) -> u64 {
        self.engine.bytes_read()
    }

    /// Observations read so far.
    pub fn observations_read(&self) -> usize {
        self.count
    }

    /// The header cell as written for each canonical column id (see
    /// [`crate::IndicatorDoc::columns`]).
    pub fn columns(&self) -> &BTreeMap<String, String> {
        &self.engine.header.columns
    }

    /// Fills `batch` (emptied first) with up to `self.batch` observations; leaves it empty at
    /// the end of the file.
    ///
    /// The observations already in `batch` are reused (their strings keep their capacity),
    /// so reading into the same batch again allocates next to nothing.
    fn fill(&mut self, batch: &mut ObservationBatch) -> Result<(), ImportError> {
        batch.first_index = self.count;
        batch.lines.clear();
        let column = self.engine.header.indicator_column().to_owned();
        let mut n = 0;
        while n < self.batch {
            if n == batch.observations.len() {
                batch.observations.push(Observation::default());
            }
            let Some((line, indicator)) = self.engine.next_row_into(&mut batch.observations[n])?
            else {
                break;
            };
            match &self.first {
                None => {
                    self.first = Some((indicator.to_owned(), line));
                    indicator.clone_into(&mut batch.indicator);
                }
                Some((code, first_line)) if code != indicator => {
                    return Err(ImportError::at_cell(
                        line,
                        &column,
                        format!(
                            "is {indicator:?}, but the file started with {code:?} (line \
                             {first_line}); a streamed file is one snapshot of one indicator, so \
                             split the file by indicator"
                        ),
                    ));
                }
                Some((code, _)) => {
                    if batch.indicator != *code {
                        code.clone_into(&mut batch.indicator);
                    }
                }
            }
            batch.lines.push(line);
            n += 1;
            self.count += 1;
        }
        batch.observations.truncate(n);
        if batch.observations.is_empty() && self.count == 0 {
            return Err(ImportError::file(
                "the file has a header but no observations",
            ));
        }
        Ok(())
    }
}

impl<R: Read> Iterator for IndicatorCsvBatches<R> {
    type Item = Result<ObservationBatch, ImportError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut batch = ObservationBatch {
            observations: Vec::with_capacity(self.batch.min(1 << 14)),
            lines: Vec::with_capacity(self.batch.min(1 << 14)),
            ..ObservationBatch::default()
        };
        match self.fill(&mut batch) {
            Ok(()) if batch.observations.is_empty() => {
                self.done = true;
                None
            }
            Ok(()) => Some(Ok(batch)),
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Streams a large indicator CSV file of either format (the simple format or SDMX-CSV 2.0)
/// to `on_batch`, in batches of at most `batch` observations, reusing one buffer: the file
/// and the snapshot are never held in memory. Returns what was read; stops at the first
/// import error (converted into `E`) or the first error of `on_batch`.
///
/// The same rules as [`IndicatorCsvBatches`] apply (one indicator per file). To take the
/// observations by value (for example to send them), iterate [`IndicatorCsvBatches`] instead.
pub fn read_indicator_csv_streaming<R, E>(
    reader: R,
    batch: usize,
    mut on_batch: impl FnMut(&ObservationBatch) -> Result<(), E>,
) -> Result<StreamSummary, E>
where
    R: Read,
    E: From<ImportError>,
{
    let mut batches = IndicatorCsvBatches::new(reader, batch)?;
    let mut buffer = ObservationBatch {
        observations: Vec::with_capacity(batches.batch.min(1 << 14)),
        lines: Vec::with_capacity(batches.batch.min(1 << 14)),
        ..ObservationBatch::default()
    };
    let mut count = 0;
    loop {
        batches.fill(&mut buffer)?;
        if buffer.observations.is_empty() {
            break;
        }
        on_batch(&buffer)?;
        count += 1;
    }
    Ok(StreamSummary {
        format: batches.format(),
        indicator: buffer.indicator,
        observations: batches.count,
        batches: count,
    })
}
