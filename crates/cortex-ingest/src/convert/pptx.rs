//! PPTX (PresentationML) to Markdown: one part per slide, the slide title as a level-1
//! heading, body placeholders as (nested) lists, tables as pipe tables, speaker notes kept.

use super::xml::{Handler, Tag, walk};
use crate::markdown::{collapse_ws, escape_line_starts, pipe_table};
use crate::zipguard::GuardedZip;
use crate::{Document, Format, IngestError, Limits, Locator, Part};

pub(super) fn convert(bytes: &[u8], limits: &Limits) -> Result<Document, IngestError> {
    let mut zip = GuardedZip::open(bytes, limits)?;
    let slides = slide_paths(&mut zip)?;
    if slides.is_empty() && zip.read("ppt/presentation.xml")?.is_none() {
        return Err(IngestError::parse("PPTX without ppt/presentation.xml"));
    }
    let mut parts = Vec::with_capacity(slides.len());
    for (i, path) in slides.iter().enumerate() {
        let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let Some(xml) = zip.read_string(path)? else {
            continue;
        };
        let mut slide = SlideHandler::default();
        walk(&xml, path, &mut slide)?;
        let notes = match notes_path(&mut zip, path)? {
            Some(notes_path) => match zip.read_string(&notes_path)? {
                Some(xml) => {
                    let mut notes = SlideHandler::default();
                    walk(&xml, &notes_path, &mut notes)?;
                    notes.notes_text()
                }
                None => String::new(),
            },
            None => String::new(),
        };
        let title = slide.title();
        let mut markdown = format!(
            "# {}",
            title.clone().unwrap_or_else(|| format!("Slide {number}"))
        );
        let body = slide.body_markdown();
        if !body.is_empty() {
            markdown.push_str("\n\n");
            markdown.push_str(&body);
        }
        if !notes.is_empty() {
            markdown.push_str("\n\nSpeaker notes: ");
            markdown.push_str(&notes);
        }
        parts.push(Part {
            locator: Some(Locator::Slide { number, title }),
            markdown,
        });
    }
    let title = parts.iter().find_map(|p| match &p.locator {
        Some(Locator::Slide { title, .. }) => title.clone(),
        _ => None,
    });
    Ok(Document {
        format: Format::Pptx,
        title,
        parts,
    })
}

/// Slide part names in presentation order (`p:sldIdLst`), or by slide number when the
/// presentation's relationships are missing.
fn slide_paths(zip: &mut GuardedZip<'_>) -> Result<Vec<String>, IngestError> {
    #[derive(Default)]
    struct Order(Vec<String>);
    impl Handler for Order {
        fn open(&mut self, name: &str, tag: &Tag<'_>) {
            if name == "sldId"
                && let Some(id) = tag.prefixed_attr("id")
            {
                self.0.push(id);
            }
        }
        fn close(&mut self, _: &str) {}
        fn text(&mut self, _: &str) {}
    }
    let mut ordered = Vec::new();
    if let Some(xml) = zip.read_string("ppt/presentation.xml")? {
        let mut order = Order::default();
        walk(&xml, "ppt/presentation.xml", &mut order)?;
        let rels = relationships(zip, "ppt/_rels/presentation.xml.rels")?;
        for id in order.0 {
            if let Some(rel) = rels.iter().find(|r| r.id == id) {
                ordered.push(resolve("ppt", &rel.target));
            }
        }
    }
    if ordered.is_empty() {
        let mut numbered: Vec<(u32, String)> = zip
            .names()
            .into_iter()
            .filter_map(|n| {
                let num = n
                    .strip_prefix("ppt/slides/slide")?
                    .strip_suffix(".xml")?
                    .parse()
                    .ok()?;
                Some((num, n))
            })
            .collect();
        numbered.sort();
        ordered = numbered.into_iter().map(|(_, n)| n).collect();
    }
    Ok(ordered)
}

/// The notes slide of a slide, from the slide's relationships.
fn notes_path(zip: &mut GuardedZip<'_>, slide: &str) -> Result<Option<String>, IngestError> {
    let (dir, file) = slide.rsplit_once('/').unwrap_or(("", slide));
    let rels = relationships(zip, &format!("{dir}/_rels/{file}.rels"))?;
    Ok(rels
        .iter()
        .find(|r| r.kind.ends_with("/notesSlide"))
        .map(|r| resolve(dir, &r.target)))
}

struct Relationship {
    id: String,
    kind: String,
    target: String,
}

fn relationships(zip: &mut GuardedZip<'_>, path: &str) -> Result<Vec<Relationship>, IngestError> {
    #[derive(Default)]
    struct Rels(Vec<Relationship>);
    impl Handler for Rels {
        fn open(&mut self, name: &str, tag: &Tag<'_>) {
            if name == "Relationship"
                && let (Some(id), Some(target)) = (tag.attr("Id"), tag.attr("Target"))
            {
                self.0.push(Relationship {
                    id,
                    kind: tag.attr("Type").unwrap_or_default(),
                    target,
                });
            }
        }
        fn close(&mut self, _: &str) {}
        fn text(&mut self, _: &str) {}
    }
    let Some(xml) = zip.read_string(path)? else {
        return Ok(Vec::new());
    };
    let mut rels = Rels::default();
    walk(&xml, path, &mut rels)?;
    Ok(rels.0)
}

/// Resolves a relationship target against the directory of its source part.
fn resolve(base_dir: &str, target: &str) -> String {
    if let Some(absolute) = target.strip_prefix('/') {
        return absolute.to_string();
    }
    let mut segments: Vec<&str> = base_dir.split('/').filter(|s| !s.is_empty()).collect();
    for seg in target.split('/') {
        match seg {
            ".." => {
                segments.pop();
            }
            "." | "" => {}
            s => segments.push(s),
        }
    }
    segments.join("/")
}

#[derive(Default, Clone, Copy, PartialEq)]
enum Bullet {
    #[default]
    Inherit,
    None,
    Char,
    Number,
}

#[derive(Default)]
struct Paragraph {
    level: u32,
    bullet: Bullet,
    text: String,
}

#[derive(Default)]
struct Shape {
    placeholder: Option<String>,
    paragraphs: Vec<Paragraph>,
    table: Vec<Vec<String>>,
}

impl Shape {
    fn kind(&self) -> &str {
        self.placeholder.as_deref().unwrap_or("")
    }
    fn is_title(&self) -> bool {
        matches!(self.kind(), "title" | "ctrTitle")
    }
    fn is_decoration(&self) -> bool {
        matches!(self.kind(), "sldNum" | "dt" | "ftr" | "hdr" | "sldImg")
    }
    /// Body and content placeholders show bullets unless a paragraph says otherwise.
    fn bulleted_by_default(&self) -> bool {
        matches!(self.kind(), "body" | "obj" | "placeholder")
    }
}

#[derive(Default)]
struct SlideHandler {
    shapes: Vec<Shape>,
    shape: Option<Shape>,
    paragraph: Option<Paragraph>,
    in_text: bool,
    table: Option<Vec<Vec<String>>>,
    row: Vec<String>,
    cell: Option<String>,
}

impl SlideHandler {
    fn title(&self) -> Option<String> {
        let text: Vec<&str> = self
            .shapes
            .iter()
            .filter(|s| s.is_title())
            .flat_map(|s| s.paragraphs.iter().map(|p| p.text.as_str()))
            .filter(|t| !t.is_empty())
            .collect();
        (!text.is_empty()).then(|| text.join(" "))
    }

    fn notes_text(&self) -> String {
        let text: Vec<&str> = self
            .shapes
            .iter()
            .filter(|s| s.kind() == "body")
            .flat_map(|s| s.paragraphs.iter().map(|p| p.text.as_str()))
            .filter(|t| !t.is_empty())
            .collect();
        text.join(" ")
    }

    fn body_markdown(&self) -> String {
        let mut blocks: Vec<String> = Vec::new();
        for shape in self
            .shapes
            .iter()
            .filter(|s| !s.is_title() && !s.is_decoration())
        {
            if !shape.table.is_empty() {
                blocks.push(pipe_table(&shape.table));
            }
            let mut list = String::new();
            let mut counters = [0u32; 10];
            for p in shape.paragraphs.iter().filter(|p| !p.text.is_empty()) {
                let bullet = match p.bullet {
                    Bullet::Inherit if shape.bulleted_by_default() => Bullet::Char,
                    Bullet::Inherit => Bullet::None,
                    b => b,
                };
                let level = p.level.min(9) as usize;
                match bullet {
                    Bullet::None | Bullet::Inherit => {
                        if !list.is_empty() {
                            blocks.push(std::mem::take(&mut list));
                        }
                        blocks.push(escape_line_starts(&p.text));
                    }
                    Bullet::Char | Bullet::Number => {
                        if !list.is_empty() {
                            list.push('\n');
                        }
                        list.push_str(&"  ".repeat(level));
                        if bullet == Bullet::Number {
                            counters[level] += 1;
                            counters[level + 1..].iter_mut().for_each(|c| *c = 0);
                            list.push_str(&format!("{}. ", counters[level]));
                        } else {
                            list.push_str("- ");
                        }
                        list.push_str(&p.text);
                    }
                }
            }
            if !list.is_empty() {
                blocks.push(list);
            }
        }
        blocks.join("\n\n")
    }
}

impl Handler for SlideHandler {
    fn open(&mut self, name: &str, tag: &Tag<'_>) {
        match name {
            "sp" | "graphicFrame" => self.shape = Some(Shape::default()),
            "ph" => {
                if let Some(shape) = self.shape.as_mut() {
                    shape.placeholder = Some(tag.attr("type").unwrap_or_else(|| "obj".into()));
                }
            }
            "p" => self.paragraph = Some(Paragraph::default()),
            "pPr" => {
                if let Some(p) = self.paragraph.as_mut() {
                    p.level = tag.attr("lvl").and_then(|v| v.parse().ok()).unwrap_or(0);
                }
            }
            "buNone" => self.set_bullet(Bullet::None),
            "buChar" | "buBlip" => self.set_bullet(Bullet::Char),
            "buAutoNum" => self.set_bullet(Bullet::Number),
            "t" => self.in_text = true,
            "br" => {
                if let Some(p) = self.paragraph.as_mut() {
                    p.text.push(' ');
                }
            }
            "tbl" => self.table = Some(Vec::new()),
            "tr" => self.row.clear(),
            "tc" => self.cell = Some(String::new()),
            _ => {}
        }
    }

    fn close(&mut self, name: &str) {
        match name {
            "t" => self.in_text = false,
            "p" => {
                if let Some(mut p) = self.paragraph.take() {
                    p.text = collapse_ws(&p.text);
                    if let Some(cell) = self.cell.as_mut() {
                        if !cell.is_empty() && !p.text.is_empty() {
                            cell.push(' ');
                        }
                        cell.push_str(&p.text);
                    } else if let Some(shape) = self.shape.as_mut() {
                        shape.paragraphs.push(p);
                    }
                }
            }
            "tc" => {
                if let Some(cell) = self.cell.take() {
                    self.row.push(cell);
                }
            }
            "tr" => {
                if let Some(table) = self.table.as_mut() {
                    table.push(std::mem::take(&mut self.row));
                }
            }
            "tbl" => {
                if let (Some(table), Some(shape)) = (self.table.take(), self.shape.as_mut()) {
                    shape.table = table
                        .into_iter()
                        .filter(|r| r.iter().any(|c| !c.is_empty()))
                        .collect();
                }
            }
            "sp" | "graphicFrame" => {
                if let Some(shape) = self.shape.take() {
                    self.shapes.push(shape);
                }
            }
            _ => {}
        }
    }

    fn text(&mut self, text: &str) {
        if self.in_text
            && let Some(p) = self.paragraph.as_mut()
        {
            p.text.push_str(text);
        }
    }
}

impl SlideHandler {
    fn set_bullet(&mut self, bullet: Bullet) {
        if let Some(p) = self.paragraph.as_mut() {
            p.bullet = bullet;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn relationship_targets_resolve_like_paths() {
        assert_eq!(resolve("ppt", "slides/slide1.xml"), "ppt/slides/slide1.xml");
        assert_eq!(
            resolve("ppt/slides", "../notesSlides/notesSlide1.xml"),
            "ppt/notesSlides/notesSlide1.xml"
        );
        assert_eq!(resolve("ppt/slides", "/ppt/media/a.png"), "ppt/media/a.png");
    }
}
