//! Hostile input: zip bombs, truncated and corrupted files must give errors, never panics,
//! and the isolation worker must contain hangs, memory blow-ups and crashes.

// Test helpers outside #[test] functions panic on purpose when a fixture is unusable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::time::{Duration, Instant};

use cortex_ingest::{
    FAULT_ENV, Format, IngestError, Limits, WorkerCommand, convert, convert_in_process,
    convert_isolated, detect,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn worker() -> WorkerCommand {
    WorkerCommand::new(env!("CARGO_BIN_EXE_cortex-ingest-worker"))
}

const DOCX_TYPES: &str = r#"<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#;
const XLSX_TYPES: &str = r#"<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/></Types>"#;

/// A zip whose `member` holds `mib` MiB of zeros (deflated to about a thousandth of that).
fn zip_bomb(types: &str, member: &str, mib: usize) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    zip.start_file("[Content_Types].xml", options).unwrap();
    zip.write_all(types.as_bytes()).unwrap();
    zip.start_file(member, options).unwrap();
    let zeros = vec![0u8; 1024 * 1024];
    for _ in 0..mib {
        zip.write_all(&zeros).unwrap();
    }
    zip.finish().unwrap();
    out.into_inner()
}

fn small_zip(types: &str, entries: &[(&str, &str)]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let options = zip::write::SimpleFileOptions::default();
    zip.start_file("[Content_Types].xml", options).unwrap();
    zip.write_all(types.as_bytes()).unwrap();
    for (name, content) in entries {
        zip.start_file(*name, options).unwrap();
        zip.write_all(content.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
    out.into_inner()
}

#[test]
fn zip_bombs_are_refused_for_docx_and_xlsx() {
    let bomb = zip_bomb(DOCX_TYPES, "word/document.xml", 300);
    assert!(bomb.len() < 2 * 1024 * 1024, "bomb is {} bytes", bomb.len());
    assert_eq!(detect("bomb.docx", &bomb), Some(Format::Docx));
    let err = convert(&bomb, Format::Docx, &Limits::default()).unwrap_err();
    assert!(matches!(err, IngestError::ZipBomb { .. }), "{err:?}");

    let bomb = zip_bomb(XLSX_TYPES, "xl/worksheets/sheet1.xml", 300);
    assert_eq!(detect("bomb.xlsx", &bomb), Some(Format::Xlsx));
    let err = convert(&bomb, Format::Xlsx, &Limits::default()).unwrap_err();
    assert!(matches!(err, IngestError::ZipBomb { .. }), "{err:?}");
}

#[test]
fn archive_bounds_count_real_bytes() {
    // The honest fixture passes with defaults but not under a tiny decompression budget.
    let docx = fixture("guide.docx");
    let tight = Limits {
        max_zip_uncompressed_bytes: 4096,
        ..Limits::default()
    };
    let err = convert(&docx, Format::Docx, &tight).unwrap_err();
    assert!(matches!(err, IngestError::ZipBomb { .. }), "{err:?}");

    let many: Vec<(String, String)> = (0..30)
        .map(|i| (format!("junk/{i}.xml"), "<a/>".to_string()))
        .collect();
    let entries: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let archive = small_zip(DOCX_TYPES, &entries);
    let few = Limits {
        max_zip_entries: 10,
        ..Limits::default()
    };
    let err = convert(&archive, Format::Docx, &few).unwrap_err();
    assert!(matches!(err, IngestError::ZipBomb { .. }), "{err:?}");
}

#[test]
fn truncated_and_garbage_files_give_errors() {
    let pdf = fixture("guide.pdf");
    let docx = fixture("guide.docx");
    let pptx = fixture("slides.pptx");
    let xlsx = fixture("budget.xlsx");
    let cases: Vec<(&str, Vec<u8>, Format)> = vec![
        ("truncated pdf", pdf[..pdf.len() / 3].to_vec(), Format::Pdf),
        (
            "pdf header only",
            b"%PDF-1.7\n%garbage\n1 0 obj <<".to_vec(),
            Format::Pdf,
        ),
        ("not a pdf", b"hello".to_vec(), Format::Pdf),
        (
            "truncated docx",
            docx[..docx.len() / 2].to_vec(),
            Format::Docx,
        ),
        (
            "garbage docx",
            (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect(),
            Format::Docx,
        ),
        (
            "truncated pptx",
            pptx[..pptx.len() / 2].to_vec(),
            Format::Pptx,
        ),
        (
            "truncated xlsx",
            xlsx[..xlsx.len() / 2].to_vec(),
            Format::Xlsx,
        ),
        (
            "xls garbage",
            vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 1, 2, 3],
            Format::Xls,
        ),
        (
            "docx with malformed xml",
            small_zip(
                DOCX_TYPES,
                &[(
                    "word/document.xml",
                    "<w:document><w:body></w:p></w:document>",
                )],
            ),
            Format::Docx,
        ),
        (
            "docx without body",
            small_zip(DOCX_TYPES, &[]),
            Format::Docx,
        ),
    ];
    for (what, bytes, format) in cases {
        let result = convert(&bytes, format, &Limits::default());
        match result {
            Err(
                IngestError::Parse { .. }
                | IngestError::Panicked { .. }
                | IngestError::NoText { .. },
            ) => {}
            other => panic!("{what}: expected a parse error, got {other:?}"),
        }
    }
}

/// Cheap deterministic corruption: truncations and byte flips of every binary fixture. Each
/// run must end in Ok or Err, never in an escaped panic. PDFs go through the worker because a
/// corrupted PDF may also make the parser loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_fixtures_never_escape() {
    let limits = Limits {
        timeout: Duration::from_secs(20),
        max_memory_bytes: 1024 * 1024 * 1024,
        ..Limits::default()
    };
    for name in [
        "guide.docx",
        "guide-lo.docx",
        "slides.pptx",
        "budget.xlsx",
        "budget.ods",
        "budget.xls",
        "guide.pdf",
    ] {
        let original = fixture(name);
        let format = detect(name, &original).unwrap();
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for round in 0..12 {
            let mut bytes = original.clone();
            if round % 3 == 0 {
                bytes.truncate(bytes.len() * (round + 1) / 13);
            }
            for _ in 0..(1 + round * 4) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let len = bytes.len().max(1);
                if let Some(b) = bytes.get_mut((seed as usize) % len) {
                    *b ^= (seed >> 32) as u8 | 1;
                }
            }
            if format == Format::Pdf {
                match convert_isolated(&worker(), &bytes, format, &limits).await {
                    Ok(_)
                    | Err(
                        IngestError::Parse { .. }
                        | IngestError::Panicked { .. }
                        | IngestError::NoText { .. },
                    ) => {}
                    Err(IngestError::Timeout { .. } | IngestError::Crashed { .. }) => {}
                    Err(other) => panic!("{name} round {round}: {other:?}"),
                }
            } else {
                let result = std::panic::catch_unwind(|| convert(&bytes, format, &limits));
                assert!(
                    result.is_ok(),
                    "{name} round {round}: a panic escaped convert()"
                );
            }
        }
    }
}

#[tokio::test]
async fn isolated_conversion_matches_in_process() {
    for name in [
        "guide.docx",
        "slides.pptx",
        "budget.ods",
        "guide.pdf",
        "article.html",
    ] {
        let bytes = fixture(name);
        let format = detect(name, &bytes).unwrap();
        let limits = Limits::default();
        let direct = convert(&bytes, format, &limits).unwrap();
        let isolated = convert_isolated(&worker(), &bytes, format, &limits)
            .await
            .unwrap();
        assert_eq!(direct, isolated, "{name}");
        let pooled = convert_in_process(&bytes, format, &limits).await.unwrap();
        assert_eq!(direct, pooled, "{name}");
    }
}

#[tokio::test]
async fn isolated_errors_come_back_typed() {
    let bomb = zip_bomb(DOCX_TYPES, "word/document.xml", 300);
    let err = convert_isolated(&worker(), &bomb, Format::Docx, &Limits::default())
        .await
        .unwrap_err();
    assert!(matches!(err, IngestError::ZipBomb { .. }), "{err:?}");

    let err = convert_isolated(&worker(), b"garbage", Format::Pdf, &Limits::default())
        .await
        .unwrap_err();
    assert!(matches!(err, IngestError::Parse { .. }), "{err:?}");

    let small = Limits {
        max_input_bytes: 3,
        ..Limits::default()
    };
    let err = convert_isolated(&worker(), b"four", Format::Text, &small)
        .await
        .unwrap_err();
    assert!(matches!(err, IngestError::TooLarge { .. }), "{err:?}");
    let err = convert_in_process(b"four", Format::Text, &small)
        .await
        .unwrap_err();
    assert!(matches!(err, IngestError::TooLarge { .. }), "{err:?}");

    let missing = WorkerCommand::new("/nonexistent/cortex-ingest-worker");
    let err = convert_isolated(&missing, b"x", Format::Text, &Limits::default())
        .await
        .unwrap_err();
    assert!(matches!(err, IngestError::Worker { .. }), "{err:?}");
}

#[tokio::test]
async fn a_hanging_worker_is_killed_at_the_timeout() {
    let limits = Limits {
        timeout: Duration::from_millis(1500),
        ..Limits::default()
    };
    let hanging = worker().env(FAULT_ENV, "sleep:600000");
    let started = Instant::now();
    let err = convert_isolated(&hanging, b"text", Format::Text, &limits)
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err, IngestError::Timeout { after_ms: 1500 });
    assert!(elapsed >= Duration::from_millis(1400), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[tokio::test]
async fn memory_limit_and_crashes_are_contained() {
    let limits = Limits {
        max_memory_bytes: 512 * 1024 * 1024,
        ..Limits::default()
    };
    let hungry = worker().env(FAULT_ENV, "alloc:2048");
    let err = convert_isolated(&hungry, b"text", Format::Text, &limits)
        .await
        .unwrap_err();
    assert!(matches!(err, IngestError::Crashed { .. }), "{err:?}");
    // Within the limit the same allocation pattern succeeds, so the limit is what stopped it.
    let modest = worker().env(FAULT_ENV, "alloc:64");
    let doc = convert_isolated(&modest, b"text", Format::Text, &limits)
        .await
        .unwrap();
    assert_eq!(doc.markdown(), "text");

    let aborting = worker().env(FAULT_ENV, "abort");
    let err = convert_isolated(&aborting, b"text", Format::Text, &limits)
        .await
        .unwrap_err();
    match err {
        IngestError::Crashed { reason } => assert!(reason.contains("SIGABRT"), "{reason}"),
        other => panic!("{other:?}"),
    }

    let panicking = worker().env(FAULT_ENV, "panic");
    let err = convert_isolated(&panicking, b"text", Format::Text, &limits)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        IngestError::Panicked {
            message: "injected parser fault".into()
        }
    );
}

#[test]
fn errors_serialise_with_stable_codes() {
    let err = IngestError::ZipBomb {
        reason: "too big".into(),
    };
    assert_eq!(err.code(), "zip_bomb");
    let json = serde_json::to_string(&err).unwrap();
    assert_eq!(json, r#"{"kind":"zip_bomb","reason":"too big"}"#);
    assert_eq!(
        err.to_string(),
        "archive refused by the zip-bomb guard: too big"
    );
}
