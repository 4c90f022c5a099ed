//! A thin event walker over quick-xml for the office extractors.

use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use crate::IngestError;

/// An opening tag as seen by a [`Handler`].
pub(super) struct Tag<'a>(&'a BytesStart<'a>);

impl Tag<'_> {
    /// The value of the attribute whose local name (prefix dropped) is `local`.
    pub(super) fn attr(&self, local: &str) -> Option<String> {
        self.0
            .attributes()
            .with_checks(false)
            .flatten()
            .find(|a| local_part(a.key.as_ref()) == local)
            .map(|a| {
                a.normalized_value(XmlVersion::Implicit1_0)
                    .map(|v| v.into_owned())
                    .unwrap_or_else(|_| a.value.into_owned())
            })
    }
}

impl Tag<'_> {
    /// The value of a namespaced attribute (`r:id`) whose local name is `local`, ignoring an
    /// unprefixed attribute of the same local name (`id`).
    pub(super) fn prefixed_attr(&self, local: &str) -> Option<String> {
        self.0
            .attributes()
            .with_checks(false)
            .flatten()
            .find(|a| {
                let key: &str = a.key.as_ref();
                key.contains(':') && local_part(key) == local
            })
            .map(|a| a.value.into_owned())
    }
}

/// Receives the events of [`walk`]; element names are local names (namespace prefix dropped).
pub(super) trait Handler {
    /// An element opens (an empty element opens and closes at once).
    fn open(&mut self, name: &str, tag: &Tag<'_>);
    /// An element closes.
    fn close(&mut self, name: &str);
    /// Character data, with entity and character references resolved.
    fn text(&mut self, text: &str);
}

fn local_part(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

/// Streams the XML document `xml` (named `what` in errors) into `handler`.
pub(super) fn walk(xml: &str, what: &str, handler: &mut impl Handler) -> Result<(), IngestError> {
    let mut reader = Reader::from_str(xml);
    let bad =
        |e: &dyn std::fmt::Display| IngestError::parse(format!("malformed XML in {what}: {e}"));
    loop {
        match reader.read_event().map_err(|e| bad(&e))? {
            Event::Start(start) => {
                let name = start.name();
                handler.open(local_part(name.as_ref()), &Tag(&start));
            }
            Event::Empty(start) => {
                let name = start.name();
                let local = local_part(name.as_ref());
                handler.open(local, &Tag(&start));
                handler.close(local);
            }
            Event::End(end) => {
                let name = end.name();
                handler.close(local_part(name.as_ref()));
            }
            Event::Text(text) => handler.text(&text.xml10_content()),
            Event::CData(data) => handler.text(&data.xml10_content()),
            Event::GeneralRef(reference) => {
                if let Ok(Some(c)) = reference.resolve_char_ref() {
                    handler.text(c.encode_utf8(&mut [0u8; 4]));
                } else {
                    let resolved = match reference.xml10_content().as_ref() {
                        "amp" => "&",
                        "lt" => "<",
                        "gt" => ">",
                        "quot" => "\"",
                        "apos" => "'",
                        _ => "",
                    };
                    handler.text(resolved);
                }
            }
            Event::Eof => return Ok(()),
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect(Vec<String>);

    impl Handler for Collect {
        fn open(&mut self, name: &str, tag: &Tag<'_>) {
            self.0.push(format!("<{name} {:?}>", tag.attr("val")));
        }
        fn close(&mut self, name: &str) {
            self.0.push(format!("</{name}>"));
        }
        fn text(&mut self, text: &str) {
            self.0.push(text.to_string());
        }
    }

    #[test]
    fn walks_prefixed_names_attributes_and_references() {
        let mut c = Collect::default();
        walk(
            r#"<w:p><w:s w:val="a&amp;b"/>x &lt;&#65;</w:p>"#,
            "t",
            &mut c,
        )
        .unwrap();
        assert_eq!(c.0.join(""), r#"<p None><s Some("a&b")></s>x <A</p>"#);
    }

    #[test]
    fn malformed_xml_is_a_parse_error() {
        let err = walk("<a><b></a>", "t", &mut Collect::default()).unwrap_err();
        assert_eq!(err.code(), "parse");
    }
}
