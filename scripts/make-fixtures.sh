#!/usr/bin/env bash
# Regenerates the committed document fixtures of cortex-ingest with real tools.
#
# Sources (Markdown, HTML, CSV) live in crates/cortex-ingest/tests/fixtures/src/; this script
# derives DOCX, PPTX, PDF, XLSX, ODS, XLS, HTML and plain text from them with pandoc and
# LibreOffice and writes them to crates/cortex-ingest/tests/fixtures/. The tests only read the
# committed outputs, so LibreOffice and pandoc are needed only to regenerate them:
#
#   apt-get update && apt-get install -y --no-install-recommends \
#       libreoffice-writer libreoffice-calc libreoffice-impress pandoc poppler-utils
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fixtures="$root/crates/cortex-ingest/tests/fixtures"
src="$fixtures/src"

for tool in pandoc soffice; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "make-fixtures: '$tool' is not installed (see the header of this script)" >&2
        exit 1
    fi
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# A private LibreOffice profile keeps the run independent of any desktop session.
profile="file://$work/lo-profile"
soffice_convert() { # <target filter> <input> [extra args...]
    local target="$1" input="$2"
    shift 2
    soffice -env:UserInstallation="$profile" --headless --norestore "$@" \
        --convert-to "$target" --outdir "$work" "$input" >/dev/null
}

# Word processing: Markdown -> DOCX (pandoc) -> PDF (LibreOffice Writer).
pandoc "$src/guide.md" -o "$fixtures/guide.docx"
soffice_convert pdf "$fixtures/guide.docx"
cp "$work/guide.pdf" "$fixtures/guide.pdf"

# The same document written by LibreOffice's own DOCX filter (DOCX -> ODT -> DOCX), a second
# producer with different XML habits (numbering, style ids, run splitting).
soffice_convert odt "$fixtures/guide.docx"
mkdir -p "$work/lo"
soffice -env:UserInstallation="$profile" --headless --norestore \
    --convert-to 'docx:MS Word 2007 XML' --outdir "$work/lo" "$work/guide.odt" >/dev/null
cp "$work/lo/guide.docx" "$fixtures/guide-lo.docx"

# HTML and plain text renderings of the same guide (pandoc).
pandoc --standalone "$src/guide.md" -o "$fixtures/guide.html"
pandoc --to plain "$src/guide.md" -o "$fixtures/guide.txt"
cp "$src/guide.md" "$fixtures/guide.md"

# Presentation: Markdown -> PPTX (pandoc; one slide per level-2 heading, notes kept).
pandoc "$src/slides.md" -o "$fixtures/slides.pptx"
# ... and the same deck re-exported by LibreOffice Impress (PPTX -> ODP -> PPTX).
soffice_convert odp "$fixtures/slides.pptx"
soffice -env:UserInstallation="$profile" --headless --norestore \
    --convert-to 'pptx:Impress MS PowerPoint 2007 XML' --outdir "$work/lo" "$work/slides.odp" >/dev/null
cp "$work/lo/slides.pptx" "$fixtures/slides-lo.pptx"

# Spreadsheets: CSV -> XLSX, ODS and legacy XLS (LibreOffice Calc, comma separated, UTF-8).
csv_filter='CSV:44,34,76,1'
soffice_convert xlsx "$src/budget.csv" --infilter="$csv_filter"
soffice_convert ods "$src/budget.csv" --infilter="$csv_filter"
soffice_convert 'xls:MS Excel 97' "$src/budget.csv" --infilter="$csv_filter"
cp "$work/budget.xlsx" "$work/budget.ods" "$work/budget.xls" "$fixtures/"
cp "$src/budget.csv" "$fixtures/budget.csv"

# A web article with navigation, sidebar and footer around the content (readability test).
cp "$src/article.html" "$fixtures/article.html"

ls -l "$fixtures"
