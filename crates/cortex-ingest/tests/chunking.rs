//! Chunks of real documents carry heading paths and page/slide/sheet, respect the budget,
//! and never cut a table row.

// Test helpers outside #[test] functions panic on purpose when a fixture is unusable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cortex_ingest::{
    Chunk, ChunkOptions, Document, Format, Limits, Locator, chunk, convert, count_tokens, detect,
};

fn load(name: &str) -> Document {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let format = detect(name, &bytes).unwrap();
    convert(&bytes, format, &Limits::default()).unwrap()
}

fn find<'a>(chunks: &'a [Chunk], needle: &str) -> &'a Chunk {
    chunks
        .iter()
        .find(|c| c.text.contains(needle))
        .unwrap_or_else(|| panic!("no chunk with {needle:?}: {chunks:#?}"))
}

#[test]
fn docx_chunks_carry_heading_paths() {
    let chunks = chunk(&load("guide.docx"), &ChunkOptions::default());
    let list = find(&chunks, "Install the runtime package");
    assert_eq!(
        list.heading_path,
        ["Cortex Field Guide", "Installation", "Requirements"]
    );
    assert!(
        list.text
            .starts_with("# Cortex Field Guide\n## Installation\n### Requirements\n\n")
    );
    let table = find(&chunks, "| max_tokens | 512 | Chunk budget |");
    assert_eq!(
        table.heading_path,
        ["Cortex Field Guide", "Installation", "Limits"]
    );
    let ops = find(&chunks, "borealis");
    assert_eq!(ops.heading_path, ["Cortex Field Guide", "Operations"]);
    assert_eq!(ops.page, None);
}

#[test]
fn pdf_chunks_know_their_page() {
    let chunks = chunk(&load("guide.pdf"), &ChunkOptions::default());
    assert_eq!(find(&chunks, "aurora").page, Some(1));
    let second = find(&chunks, "borealis");
    assert_eq!(second.page, Some(2));
    assert_eq!(second.locator, Some(Locator::Page { number: 2 }));
}

#[test]
fn slide_and_sheet_chunks_know_their_place() {
    let chunks = chunk(&load("slides.pptx"), &ChunkOptions::default());
    let table = find(&chunks, "| North | 120 | 12% |");
    assert_eq!(table.page, Some(3));
    assert_eq!(table.heading_path, ["Regional Figures"]);
    assert_eq!(
        table.locator.as_ref().map(Locator::label).as_deref(),
        Some("slide 3: Regional Figures")
    );
    assert_eq!(find(&chunks, "nebula").heading_path, ["Next Steps"]);

    for name in ["budget.xlsx", "budget.ods"] {
        let chunks = chunk(&load(name), &ChunkOptions::default());
        let row = find(&chunks, "| Training | Q2 | 400 | People |");
        assert_eq!(row.heading_path, ["budget"]);
        assert_eq!(row.page, Some(1));
        assert_eq!(
            row.locator.as_ref().map(Locator::label).as_deref(),
            Some("sheet budget")
        );
    }
}

#[test]
fn every_fixture_chunks_within_a_small_budget() {
    let options = ChunkOptions {
        max_tokens: 40,
        overlap_tokens: 10,
        heading_prefix: true,
    };
    for name in [
        "guide.docx",
        "guide-lo.docx",
        "guide.pdf",
        "slides.pptx",
        "slides-lo.pptx",
        "budget.xlsx",
        "budget.ods",
        "budget.xls",
        "budget.csv",
        "article.html",
        "guide.html",
        "guide.md",
        "guide.txt",
    ] {
        let chunks = chunk(&load(name), &options);
        assert!(!chunks.is_empty(), "{name}");
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(c.index, i);
            assert_eq!(c.token_count, count_tokens(&c.text), "{name}");
            assert!(
                c.token_count <= 40,
                "{name}: {} tokens in {:?}",
                c.token_count,
                c.text
            );
        }
    }
}

#[test]
fn a_long_sheet_splits_between_rows_with_the_header_repeated() {
    let mut rows = String::from("| Id | Customer | City | Balance |\n| --- | --- | --- | --- |\n");
    for i in 0..400 {
        rows.push_str(&format!(
            "| {i} | Customer number {i} | City {} | {}.50 |\n",
            i % 17,
            i * 3
        ));
    }
    let doc = Document {
        format: Format::Xlsx,
        title: None,
        parts: vec![cortex_ingest::Part {
            locator: Some(Locator::Sheet {
                number: 2,
                name: "Ledger".into(),
            }),
            markdown: format!("## Ledger\n\n{rows}"),
        }],
    };
    let options = ChunkOptions {
        max_tokens: 128,
        overlap_tokens: 0,
        heading_prefix: true,
    };
    let chunks = chunk(&doc, &options);
    assert!(chunks.len() > 20, "{}", chunks.len());
    let mut seen = Vec::new();
    for c in &chunks {
        assert!(c.token_count <= 128);
        assert_eq!(c.page, Some(2));
        let body = c.text.strip_prefix("## Ledger\n\n").unwrap();
        let mut lines = body.lines();
        assert_eq!(lines.next(), Some("| Id | Customer | City | Balance |"));
        assert_eq!(lines.next(), Some("| --- | --- | --- | --- |"));
        for line in lines {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 4, "cut row {line:?}");
            seen.push(cells[0].parse::<u32>().unwrap());
        }
    }
    assert_eq!(seen, (0..400).collect::<Vec<_>>());
}
