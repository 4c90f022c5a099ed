//! Workbooks (XLSX, XLS, ODS via calamine) and CSV to Markdown pipe tables.

use std::io::Cursor;

use calamine::{Data, Ods, Reader, Xls, Xlsx, open_workbook_from_rs};

use crate::markdown::{decode_lossy, pipe_table, trim_grid};
use crate::zipguard::GuardedZip;
use crate::{Document, Format, IngestError, Limits, Locator, Part};

pub(super) fn convert_workbook(
    bytes: &[u8],
    format: Format,
    limits: &Limits,
) -> Result<Document, IngestError> {
    if format.is_zip() {
        // calamine reads the archive itself: prove first that it stays within the bounds.
        GuardedZip::open(bytes, limits)?.check_all()?;
    }
    let cursor = Cursor::new(bytes);
    let sheets = match format {
        Format::Xlsx => read_xlsx(
            open_workbook_from_rs::<Xlsx<_>, _>(cursor).map_err(bad)?,
            limits,
        ),
        Format::Ods => read_sheets(
            open_workbook_from_rs::<Ods<_>, _>(cursor).map_err(bad)?,
            limits,
        ),
        _ => read_sheets(
            open_workbook_from_rs::<Xls<_>, _>(cursor).map_err(bad)?,
            limits,
        ),
    }?;
    let parts = sheets
        .into_iter()
        .enumerate()
        .filter(|(_, (_, rows))| !rows.is_empty())
        .map(|(i, (name, rows))| Part {
            markdown: format!("## {name}\n\n{}", pipe_table(&rows)),
            locator: Some(Locator::Sheet {
                number: u32::try_from(i + 1).unwrap_or(u32::MAX),
                name,
            }),
        })
        .collect();
    Ok(Document {
        format,
        title: None,
        parts,
    })
}

fn bad(e: impl std::fmt::Display) -> IngestError {
    IngestError::parse(format!("workbook: {e}"))
}

type Sheet = (String, Vec<Vec<String>>);

fn read_sheets<RS, R>(mut workbook: R, limits: &Limits) -> Result<Vec<Sheet>, IngestError>
where
    RS: std::io::Read + std::io::Seek,
    R: Reader<RS>,
    R::Error: std::fmt::Display,
{
    let mut cells: u64 = 0;
    let mut sheets = Vec::new();
    for name in workbook.sheet_names() {
        let range = workbook.worksheet_range(&name).map_err(bad)?;
        let (height, width) = range.get_size();
        cells = cells.saturating_add((height as u64).saturating_mul(width as u64));
        if cells > limits.max_sheet_cells {
            return Err(IngestError::too_large(
                "sheet cells",
                limits.max_sheet_cells,
            ));
        }
        let rows: Vec<Vec<String>> = range
            .rows()
            .map(|row| row.iter().map(cell_text).collect())
            .collect();
        sheets.push((name, trim_grid(rows)));
    }
    Ok(sheets)
}

/// XLSX sheets are streamed cell by cell, so that a sheet whose few cells lie far apart (A1
/// and XFD1048576) cannot make a dense grid of billions of cells: only the rows and columns
/// that hold a value are laid out.
fn read_xlsx<RS>(mut workbook: Xlsx<RS>, limits: &Limits) -> Result<Vec<Sheet>, IngestError>
where
    RS: std::io::Read + std::io::Seek,
{
    let mut total: u64 = 0;
    let mut sheets = Vec::new();
    for name in workbook.sheet_names() {
        let mut reader = workbook.worksheet_cells_reader(&name).map_err(bad)?;
        let mut cells: Vec<(u32, u32, String)> = Vec::new();
        while let Some(cell) = reader.next_cell().map_err(bad)? {
            let (row, col) = cell.get_position();
            let text = cell_text(&Data::from(cell.get_value().clone()));
            if text.trim().is_empty() {
                continue;
            }
            total += 1;
            if total > limits.max_sheet_cells {
                return Err(IngestError::too_large(
                    "sheet cells",
                    limits.max_sheet_cells,
                ));
            }
            cells.push((row, col, text));
        }
        sheets.push((name, sparse_grid(cells, limits)?));
    }
    Ok(sheets)
}

/// Lays out sparse cells on the rows and columns that hold a value, in order.
fn sparse_grid(
    cells: Vec<(u32, u32, String)>,
    limits: &Limits,
) -> Result<Vec<Vec<String>>, IngestError> {
    let mut rows: Vec<u32> = cells.iter().map(|c| c.0).collect();
    let mut cols: Vec<u32> = cells.iter().map(|c| c.1).collect();
    rows.sort_unstable();
    rows.dedup();
    cols.sort_unstable();
    cols.dedup();
    if (rows.len() as u64).saturating_mul(cols.len() as u64) > limits.max_sheet_cells {
        return Err(IngestError::too_large(
            "sheet cells",
            limits.max_sheet_cells,
        ));
    }
    let mut grid = vec![vec![String::new(); cols.len()]; rows.len()];
    for (row, col, text) in cells {
        if let (Ok(r), Ok(c)) = (rows.binary_search(&row), cols.binary_search(&col)) {
            grid[r][c] = text;
        }
    }
    Ok(grid)
}

/// A cell as text: integral floats without `.0`, dates as ISO 8601, errors as `#NAME?` etc.
fn cell_text(cell: &Data) -> String {
    match cell {
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::DateTime(dt) if dt.is_datetime() => {
            let (y, mo, d, h, mi, s, _) = dt.to_ymd_hms_milli();
            if (h, mi, s) == (0, 0, 0) {
                format!("{y:04}-{mo:02}-{d:02}")
            } else {
                format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
            }
        }
        other => other.to_string(),
    }
}

pub(super) fn convert_csv(bytes: &[u8], limits: &Limits) -> Result<Document, IngestError> {
    let text = decode_lossy(bytes);
    let delimiter = sniff_delimiter(&text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut cells: u64 = 0;
    for record in reader.records() {
        let record = record.map_err(|e| IngestError::parse(format!("CSV: {e}")))?;
        cells += record.len() as u64;
        if cells > limits.max_sheet_cells {
            return Err(IngestError::too_large("CSV cells", limits.max_sheet_cells));
        }
        rows.push(record.iter().map(str::to_string).collect());
    }
    let rows = trim_grid(rows);
    Ok(Document {
        format: Format::Csv,
        title: None,
        parts: vec![Part {
            locator: None,
            markdown: pipe_table(&rows),
        }],
    })
}

/// Picks the separator that occurs most (outside quotes) on the first line: `,` `;` tab `|`.
fn sniff_delimiter(text: &str) -> u8 {
    let first = text.lines().next().unwrap_or("");
    let mut counts = [(b',', 0usize), (b';', 0), (b'\t', 0), (b'|', 0)];
    let mut quoted = false;
    for b in first.bytes() {
        if b == b'"' {
            quoted = !quoted;
        } else if !quoted && let Some(c) = counts.iter_mut().find(|(d, _)| *d == b) {
            c.1 += 1;
        }
    }
    counts
        .iter()
        .max_by_key(|(d, n)| (*n, *d == b','))
        .filter(|(_, n)| *n > 0)
        .map(|(d, _)| *d)
        .unwrap_or(b',')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_cells_are_laid_out_compactly() {
        let grid = sparse_grid(
            vec![
                (0, 0, "a".into()),
                (1_000_000, 16_000, "z".into()),
                (0, 16_000, "b".into()),
            ],
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(
            grid,
            vec![
                vec!["a".to_string(), "b".to_string()],
                vec![String::new(), "z".to_string()]
            ]
        );
    }

    #[test]
    fn delimiters_are_sniffed() {
        assert_eq!(sniff_delimiter("a;b;c\n1;2;3"), b';');
        assert_eq!(sniff_delimiter("a\tb\n"), b'\t');
        assert_eq!(sniff_delimiter("\"x,y\";z\n"), b';');
        assert_eq!(sniff_delimiter("single"), b',');
    }

    #[test]
    fn csv_becomes_a_pipe_table_with_quoted_commas_kept() {
        let doc = convert_csv(b"h1,h2\n\"a, b\",c|d\n", &Limits::default()).unwrap();
        assert_eq!(
            doc.parts[0].markdown,
            "| h1 | h2 |\n| --- | --- |\n| a, b | c\\|d |"
        );
    }

    #[test]
    fn csv_cell_bound_is_enforced() {
        let limits = Limits {
            max_sheet_cells: 3,
            ..Limits::default()
        };
        let err = convert_csv(b"a,b\nc,d\n", &limits).unwrap_err();
        assert_eq!(err.code(), "too_large");
    }
}
