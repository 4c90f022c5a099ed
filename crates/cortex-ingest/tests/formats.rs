//! Conversion of real fixture documents (made by pandoc and LibreOffice, see
//! `scripts/make-fixtures.sh`): text, headings, lists and tables must survive.

// Test helpers outside #[test] functions panic on purpose when a fixture is unusable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cortex_ingest::{Document, Format, Limits, Locator, convert, detect};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn load(name: &str) -> Document {
    let bytes = fixture(name);
    let format = detect(name, &bytes).unwrap_or_else(|| panic!("{name}: not detected"));
    convert(&bytes, format, &Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn assert_contains(haystack: &str, needles: &[&str]) {
    for needle in needles {
        assert!(
            haystack.contains(needle),
            "missing {needle:?} in:\n{haystack}"
        );
    }
}

#[test]
fn detection_by_content_and_extension() {
    let cases = [
        ("guide.docx", Format::Docx),
        ("guide-lo.docx", Format::Docx),
        ("slides.pptx", Format::Pptx),
        ("slides-lo.pptx", Format::Pptx),
        ("budget.xlsx", Format::Xlsx),
        ("budget.ods", Format::Ods),
        ("budget.xls", Format::Xls),
        ("budget.csv", Format::Csv),
        ("guide.pdf", Format::Pdf),
        ("guide.html", Format::Html),
        ("guide.md", Format::Markdown),
        ("guide.txt", Format::Text),
    ];
    for (name, expected) in cases {
        assert_eq!(detect(name, &fixture(name)), Some(expected), "{name}");
    }
    // Content wins over a misleading or missing name.
    assert_eq!(
        detect("report.pdf", &fixture("guide.docx")),
        Some(Format::Docx)
    );
    assert_eq!(
        detect("upload", &fixture("slides.pptx")),
        Some(Format::Pptx)
    );
    assert_eq!(
        detect("upload.bin", &fixture("budget.ods")),
        Some(Format::Ods)
    );
    assert_eq!(detect("noext", &fixture("guide.pdf")), Some(Format::Pdf));
    assert_eq!(detect("page", &fixture("article.html")), Some(Format::Html));
    assert_eq!(detect("README", b"just some words\n"), Some(Format::Text));
    // Binary junk and unsupported containers are refused.
    assert_eq!(detect("image.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), None);
    assert_eq!(detect("blob", &[0u8, 1, 2, 3, 0, 255]), None);
    assert_eq!(
        detect(
            "old.doc",
            &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 0, 0]
        ),
        None
    );
    // A name that promises a binary format the bytes do not confirm still routes to that
    // converter, which then reports a parse error.
    assert_eq!(detect("broken.docx", b"not a zip"), Some(Format::Docx));
    assert_eq!("md".parse::<Format>(), Ok(Format::Markdown));
    assert_eq!("PDF".parse::<Format>(), Ok(Format::Pdf));
    assert!("exe".parse::<Format>().is_err());
}

#[test]
fn docx_from_pandoc_and_libreoffice_keeps_structure() {
    for name in ["guide.docx", "guide-lo.docx"] {
        let doc = load(name);
        assert_eq!(doc.format, Format::Docx);
        assert_eq!(doc.title.as_deref(), Some("Cortex Field Guide"), "{name}");
        assert_eq!(doc.parts.len(), 1);
        assert_contains(
            &doc.markdown(),
            &[
                "# Cortex Field Guide\n",
                "\n## Installation\n",
                "\n### Requirements\n",
                "\n### Limits\n",
                "\n## Operations\n",
                "\n### Monitoring\n",
                "the aurora keyword",
                "- Install the runtime package\n- Create the upload directory\n- Configure the embedding model",
                "1. Download the release archive\n2. Verify the checksum\n3. Start the server with cortex serve",
                "| Setting | Default | Meaning |\n| --- | --- | --- |\n",
                "| max_tokens | 512 | Chunk budget |",
                "| timeout | 60 | Worker seconds |",
                "borealis keyword appears only on the second page",
            ],
        );
    }
}

#[test]
fn pdf_pages_keep_text_lists_and_table_cells() {
    let doc = load("guide.pdf");
    assert_eq!(doc.format, Format::Pdf);
    assert_eq!(doc.parts.len(), 2);
    assert_eq!(doc.parts[0].locator, Some(Locator::Page { number: 1 }));
    assert_eq!(doc.parts[1].locator, Some(Locator::Page { number: 2 }));
    let page1 = &doc.parts[0].markdown;
    let page2 = &doc.parts[1].markdown;
    assert_contains(
        page1,
        &[
            "Cortex Field Guide",
            "Installation",
            "Requirements",
            "aurora",
            "- Install the runtime package",
            "Download the release archive",
            "max_tokens",
            "Chunk budget",
            "Worker seconds",
        ],
    );
    assert!(!page1.contains("borealis"));
    assert_contains(
        page2,
        &["Operations", "borealis", "Monitoring", "Prometheus"],
    );
}

#[test]
fn pptx_from_pandoc_and_libreoffice_has_slides_titles_lists_tables_notes() {
    for name in ["slides.pptx", "slides-lo.pptx"] {
        let doc = load(name);
        assert_eq!(doc.format, Format::Pptx);
        assert_eq!(doc.title.as_deref(), Some("Quarterly Review"), "{name}");
        let titles: Vec<_> = doc
            .parts
            .iter()
            .map(|p| p.locator.as_ref().map(Locator::label).unwrap_or_default())
            .collect();
        assert_eq!(
            titles,
            [
                "slide 1: Quarterly Review",
                "slide 2: Revenue Overview",
                "slide 3: Regional Figures",
                "slide 4: Next Steps"
            ],
            "{name}"
        );
        assert_eq!(
            doc.parts[1].markdown,
            "# Revenue Overview\n\n- Revenue grew in every region\n- Churn fell below three percent\n  - Enterprise churn stayed flat",
            "{name}"
        );
        assert_contains(
            &doc.parts[2].markdown,
            &[
                "# Regional Figures\n\n| Region | Revenue | Growth |\n| --- | --- | --- |\n",
                "| North | 120 | 12% |",
                "| South | 95 | 8% |",
            ],
        );
        assert_contains(
            &doc.parts[3].markdown,
            &[
                "# Next Steps\n\nHiring continues in the platform team, and the nebula project ships in spring.",
                "Speaker notes: Remember to thank the finance team.",
            ],
        );
    }
}

#[test]
fn workbooks_become_one_table_per_sheet() {
    for (name, format) in [
        ("budget.xlsx", Format::Xlsx),
        ("budget.ods", Format::Ods),
        ("budget.xls", Format::Xls),
    ] {
        let doc = load(name);
        assert_eq!(doc.format, format);
        assert_eq!(doc.parts.len(), 1, "{name}");
        assert_eq!(
            doc.parts[0].locator,
            Some(Locator::Sheet {
                number: 1,
                name: "budget".into()
            })
        );
        assert_eq!(
            doc.parts[0].markdown,
            "## budget\n\n| Item | Quarter | Amount | Owner |\n| --- | --- | --- | --- |\n\
             | Servers | Q1 | 1200 | Platform |\n| Licenses | Q1 | 300 | Finance |\n\
             | Travel, conferences | Q2 | 850 | Sales |\n| Training | Q2 | 400 | People |",
            "{name}"
        );
    }
}

/// A workbook with several sheets, dates, fractions and a far-away cell, written by
/// rust_xlsxwriter (a real XLSX writer).
fn multi_sheet_xlsx() -> Vec<u8> {
    use rust_xlsxwriter::{ExcelDateTime, Format as CellFormat, Workbook};
    let mut workbook = Workbook::new();
    let date = CellFormat::new().set_num_format("yyyy-mm-dd");
    let revenue = workbook.add_worksheet();
    revenue.set_name("Revenue").unwrap();
    revenue.write(0, 0, "Month").unwrap();
    revenue.write(0, 1, "Amount").unwrap();
    revenue.write(0, 2, "Booked").unwrap();
    revenue.write(1, 0, "January").unwrap();
    revenue.write(1, 1, 1250.5).unwrap();
    let day = ExcelDateTime::from_ymd(2025, 1, 31).unwrap();
    revenue
        .write_datetime_with_format(1, 2, &day, &date)
        .unwrap();
    revenue.write(2, 0, "February").unwrap();
    revenue.write(2, 1, 980).unwrap();
    revenue.write(5000, 300, "far corner").unwrap();
    let empty = workbook.add_worksheet();
    empty.set_name("Empty").unwrap();
    let costs = workbook.add_worksheet();
    costs.set_name("Costs").unwrap();
    costs.write(0, 0, "Kind").unwrap();
    costs.write(0, 1, "Amount").unwrap();
    costs.write(1, 0, "Rent | office").unwrap();
    costs.write(1, 1, 700).unwrap();
    workbook.save_to_buffer().unwrap()
}

#[test]
fn multi_sheet_workbook_keeps_sheet_names_numbers_and_dates() {
    let bytes = multi_sheet_xlsx();
    assert_eq!(detect("book.xlsx", &bytes), Some(Format::Xlsx));
    let doc = convert(&bytes, Format::Xlsx, &Limits::default()).unwrap();
    let labels: Vec<_> = doc
        .parts
        .iter()
        .map(|p| p.locator.clone().unwrap())
        .collect();
    assert_eq!(
        labels,
        [
            Locator::Sheet {
                number: 1,
                name: "Revenue".into()
            },
            Locator::Sheet {
                number: 3,
                name: "Costs".into()
            }
        ]
    );
    assert_contains(
        &doc.parts[0].markdown,
        &[
            "## Revenue\n\n| Month | Amount | Booked |  |\n",
            "| January | 1250.5 | 2025-01-31 |  |",
            "| February | 980 |  |  |",
            "|  |  |  | far corner |",
        ],
    );
    assert_contains(
        &doc.parts[1].markdown,
        &["## Costs", "| Rent \\| office | 700 |"],
    );
}

#[test]
fn csv_becomes_a_table() {
    let doc = load("budget.csv");
    assert_eq!(doc.parts[0].locator, None);
    assert_contains(
        &doc.markdown(),
        &[
            "| Item | Quarter | Amount | Owner |\n| --- | --- | --- | --- |",
            "| Travel, conferences | Q2 | 850 | Sales |",
        ],
    );
}

#[test]
fn html_article_keeps_content_and_drops_boilerplate() {
    let doc = load("article.html");
    assert_eq!(doc.title.as_deref(), Some("Understanding Vector Search"));
    let md = doc.markdown();
    assert_contains(
        &md,
        &[
            "# Understanding Vector Search\n",
            "\n## How embeddings work\n",
            "\n## Choosing an index\n",
            "- Split documents into chunks of a few hundred tokens\n- Embed every chunk once",
            "The quasar keyword",
            "| Brute force | 100%",
            "| HNSW        | 98%",
        ],
    );
    for boilerplate in [
        "Log in",
        "Popular posts",
        "Gardening",
        "Cookie settings",
        "analytics",
    ] {
        assert!(!md.contains(boilerplate), "{boilerplate:?} kept in:\n{md}");
    }
}

#[test]
fn html_from_pandoc_keeps_headings_lists_and_table() {
    let doc = load("guide.html");
    assert_contains(
        &doc.markdown(),
        &[
            "# Installation",
            "## Requirements",
            "- Install the runtime package",
            "1. Download the release archive",
            // htmd escapes Markdown-significant underscores.
            "| max\\_tokens | 512",
            "borealis",
        ],
    );
}

#[test]
fn markdown_and_text_pass_through() {
    let md = load("guide.md");
    assert_eq!(md.title.as_deref(), Some("Cortex Field Guide"));
    assert!(md.parts[0].markdown.starts_with("# Installation\n"));
    assert_contains(
        &md.parts[0].markdown,
        &[
            "| max_tokens | 512 | Chunk budget |",
            "- Create the upload directory",
        ],
    );
    let text = load("guide.txt");
    assert_eq!(text.format, Format::Text);
    assert_contains(
        &text.markdown(),
        &["aurora", "Install the runtime package", "borealis"],
    );
}
