//! OpenAPI 3 import: one [`ActionSpec`] per operation.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::action::{ActionAuth, ActionSpec, HttpMethod};

/// How deep `$ref`s are followed before a schema is replaced by `{}` (accept anything).
const MAX_REF_DEPTH: usize = 24;

/// Why a document could not be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// The text is neither valid JSON nor valid YAML.
    #[error("cannot parse the OpenAPI document: {0}")]
    Parse(String),
    /// The document is not an OpenAPI 3 document.
    #[error("not an OpenAPI 3 document: {0}")]
    NotOpenApi(String),
    /// No base URL was given and the document has no absolute `servers[0].url`.
    #[error("no base URL: pass one or give the document an absolute servers[0].url")]
    NoBaseUrl,
}

/// Parses an OpenAPI 3 document given as JSON or YAML text and imports it
/// (see [`import_openapi`]).
pub fn import_openapi_str(text: &str, base_url: &str) -> Result<Vec<ActionSpec>, ImportError> {
    let doc: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(json_err) => serde_norway::from_str(text).map_err(|yaml_err| {
            if text.trim_start().starts_with('{') {
                ImportError::Parse(json_err.to_string())
            } else {
                ImportError::Parse(yaml_err.to_string())
            }
        })?,
    };
    import_openapi(&doc, base_url)
}

/// Imports every GET/POST/PUT/PATCH/DELETE operation of an OpenAPI 3 document as an action.
///
/// * `webhook_url` is `base_url` (or, when it is empty, the document's absolute
///   `servers[0].url`); `path_template` is the operation's path.
/// * The name is the `operationId`, or method and path, in snake_case; duplicates get `_2`, `_3`…
/// * Path and query parameters (path-level ones included, operation-level ones winning) and the
///   properties of an `application/json` request body are merged into one object
///   `parameters_schema`; a body that is not an object becomes the argument `body`. A body
///   property named like a parameter is left to the parameter. `query_schema` and `body_schema`
///   keep the query parameters and the body apart. Header and cookie parameters are not
///   imported (arguments never become headers).
/// * Local `$ref`s (`#/components/...`) are inlined; external or circular ones become `{}`.
/// * Auth is [`ActionAuth::None`]: credentials are attached from a stored connection.
pub fn import_openapi(doc: &Value, base_url: &str) -> Result<Vec<ActionSpec>, ImportError> {
    let version = doc
        .get("openapi")
        .and_then(Value::as_str)
        .ok_or_else(|| ImportError::NotOpenApi("missing \"openapi\" version field".to_string()))?;
    if !version.starts_with('3') {
        return Err(ImportError::NotOpenApi(format!(
            "version {version:?} is not supported (OpenAPI 3.x only)"
        )));
    }
    let base = resolve_base_url(doc, base_url)?;
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
        return Ok(Vec::new());
    };

    let mut specs = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (path, item) in paths {
        let item = shallow(doc, item);
        let path_params = item
            .get("parameters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (key, method) in [
            ("get", HttpMethod::Get),
            ("post", HttpMethod::Post),
            ("put", HttpMethod::Put),
            ("patch", HttpMethod::Patch),
            ("delete", HttpMethod::Delete),
        ] {
            let Some(op) = item.get(key) else { continue };
            let mut spec = import_operation(doc, &base, path, method, op, &path_params);
            let count = names.entry(spec.name.clone()).or_insert(0);
            *count += 1;
            if *count > 1 {
                spec.name = format!("{}_{}", spec.name, count);
            }
            specs.push(spec);
        }
    }
    Ok(specs)
}

fn resolve_base_url(doc: &Value, base_url: &str) -> Result<String, ImportError> {
    let given = base_url.trim();
    if !given.is_empty() {
        return Ok(given.trim_end_matches('/').to_string());
    }
    let server = doc
        .get("servers")
        .and_then(Value::as_array)
        .and_then(|s| s.first())
        .and_then(|s| s.get("url"))
        .and_then(Value::as_str)
        .ok_or(ImportError::NoBaseUrl)?;
    if server.starts_with("http://") || server.starts_with("https://") {
        Ok(server.trim_end_matches('/').to_string())
    } else {
        Err(ImportError::NoBaseUrl)
    }
}

#[derive(Default)]
struct ObjectSchema {
    properties: Map<String, Value>,
    required: BTreeSet<String>,
}

impl ObjectSchema {
    fn into_value(self) -> Value {
        let mut schema = json!({"type": "object", "properties": self.properties});
        if !self.required.is_empty() {
            schema["required"] = Value::Array(self.required.into_iter().map(Value::from).collect());
        }
        schema
    }
}

fn import_operation(
    doc: &Value,
    base: &str,
    path: &str,
    method: HttpMethod,
    op: &Value,
    path_params: &[Value],
) -> ActionSpec {
    let name = op
        .get("operationId")
        .and_then(Value::as_str)
        .map(snake_case)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| snake_case(&format!("{} {path}", method.as_str())));
    let description = ["summary", "description"]
        .iter()
        .filter_map(|k| op.get(*k).and_then(Value::as_str))
        .map(str::trim)
        .find(|s| !s.is_empty())
        .map(str::to_string);

    // Parameters keyed by (in, name); operation-level ones override path-level ones.
    let mut params: BTreeMap<(String, String), Value> = BTreeMap::new();
    let op_params = op
        .get("parameters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for raw in path_params.iter().chain(op_params.iter()) {
        let param = resolve(doc, raw);
        let (Some(location), Some(pname)) = (
            param.get("in").and_then(Value::as_str),
            param.get("name").and_then(Value::as_str),
        ) else {
            continue;
        };
        params.insert((location.to_string(), pname.to_string()), param.clone());
    }

    let mut all = ObjectSchema::default();
    let mut query = ObjectSchema::default();
    for ((location, pname), param) in &params {
        if location != "path" && location != "query" {
            continue;
        }
        let mut schema = param
            .get("schema")
            .map(|s| resolve(doc, s))
            .unwrap_or_else(|| json!({"type": "string"}));
        if let (Some(obj), Some(desc)) = (
            schema.as_object_mut(),
            param.get("description").and_then(Value::as_str),
        ) {
            obj.entry("description")
                .or_insert_with(|| Value::from(desc));
        }
        let required = location == "path"
            || param
                .get("required")
                .and_then(Value::as_bool)
                .unwrap_or(false);
        if required {
            all.required.insert(pname.clone());
        }
        all.properties.insert(pname.clone(), schema.clone());
        if location == "query" {
            if required {
                query.required.insert(pname.clone());
            }
            query.properties.insert(pname.clone(), schema);
        }
    }

    let mut body_schema = None;
    if let Some(body) = op.get("requestBody").map(|b| resolve(doc, b)) {
        let body_required = body
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let content = body.get("content").and_then(Value::as_object);
        let json_schema = content.and_then(|c| {
            c.get("application/json")
                .or_else(|| c.iter().find(|(k, _)| k.contains("json")).map(|(_, v)| v))
                .and_then(|media| media.get("schema"))
        });
        if let Some(schema) = json_schema.map(|s| resolve(doc, s)) {
            match schema.get("properties").and_then(Value::as_object) {
                Some(props) => {
                    for (pname, pschema) in props {
                        if !all.properties.contains_key(pname) {
                            all.properties.insert(pname.clone(), pschema.clone());
                        }
                    }
                    if body_required {
                        let inner = schema.get("required").and_then(Value::as_array);
                        for r in inner.into_iter().flatten().filter_map(Value::as_str) {
                            all.required.insert(r.to_string());
                        }
                    }
                }
                None => {
                    all.properties.insert("body".to_string(), schema.clone());
                    if body_required {
                        all.required.insert("body".to_string());
                    }
                }
            }
            body_schema = Some(schema);
        }
    }

    ActionSpec {
        name,
        description,
        method,
        webhook_url: base.to_string(),
        path_template: Some(path.to_string()),
        headers: BTreeMap::new(),
        auth: ActionAuth::None,
        parameters_schema: all.into_value(),
        query_schema: (!query.properties.is_empty()).then(|| query.into_value()),
        body_schema,
    }
}

/// Inlines local `$ref`s recursively; unresolvable, external or circular ones become `{}`, and
/// so does every `$ref` met once a node budget is spent (guards against exponential fan-out).
fn resolve(doc: &Value, value: &Value) -> Value {
    let mut inliner = Inliner {
        doc,
        stack: Vec::new(),
        budget: MAX_INLINED_NODES,
    };
    inliner.inline(value, 0)
}

/// Follows a top-level local `$ref` only (a path item's own reference).
fn shallow<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    let mut current = value;
    for _ in 0..MAX_REF_DEPTH {
        let Some(target) = current
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|p| doc.pointer(&unescape_pointer(p)))
        else {
            break;
        };
        current = target;
    }
    current
}

/// Node budget of one [`resolve`] call.
const MAX_INLINED_NODES: usize = 50_000;

struct Inliner<'a> {
    doc: &'a Value,
    stack: Vec<String>,
    budget: usize,
}

impl Inliner<'_> {
    fn inline(&mut self, value: &Value, depth: usize) -> Value {
        if depth > MAX_REF_DEPTH * 8 {
            return json!({});
        }
        self.budget = self.budget.saturating_sub(1);
        match value {
            Value::Object(obj) => {
                if let Some(reference) = obj.get("$ref").and_then(Value::as_str) {
                    if self.budget == 0
                        || self.stack.iter().any(|r| r == reference)
                        || self.stack.len() >= MAX_REF_DEPTH
                    {
                        return json!({});
                    }
                    let doc = self.doc;
                    let Some(target) = reference
                        .strip_prefix('#')
                        .and_then(|pointer| doc.pointer(&unescape_pointer(pointer)))
                    else {
                        return json!({});
                    };
                    self.stack.push(reference.to_string());
                    let inlined = self.inline(target, depth + 1);
                    self.stack.pop();
                    return inlined;
                }
                Value::Object(
                    obj.iter()
                        .map(|(k, v)| (k.clone(), self.inline(v, depth + 1)))
                        .collect(),
                )
            }
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.inline(v, depth + 1)).collect())
            }
            other => other.clone(),
        }
    }
}

/// `$ref` pointers may be percent-encoded (`#/paths/~1orders%7Bid%7D`).
fn unescape_pointer(pointer: &str) -> String {
    percent_encoding::percent_decode_str(pointer)
        .decode_utf8_lossy()
        .into_owned()
}

/// `getOrderStatus`, `get-order status`, `GET /orders/{id}` → `get_order_status`, `get_orders_id`.
pub fn snake_case(input: &str) -> String {
    let mut out = String::with_capacity(input.len() + 4);
    let chars: Vec<char> = input.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() {
                let prev = i.checked_sub(1).and_then(|p| chars.get(p)).copied();
                let next = chars.get(i + 1).copied();
                let boundary = match prev {
                    Some(p) if p.is_ascii_lowercase() || p.is_ascii_digit() => true,
                    Some(p) if p.is_ascii_uppercase() => {
                        next.is_some_and(|n| n.is_ascii_lowercase())
                    }
                    _ => false,
                };
                if boundary && !out.ends_with('_') && !out.is_empty() {
                    out.push('_');
                }
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_cases() {
        assert_eq!(snake_case("getOrderStatus"), "get_order_status");
        assert_eq!(snake_case("GET /orders/{order_id}"), "get_orders_order_id");
        assert_eq!(snake_case("listHTTPRoutes"), "list_http_routes");
        assert_eq!(snake_case("create-user v2"), "create_user_v2");
        assert_eq!(snake_case("already_snake"), "already_snake");
        assert_eq!(snake_case("__x__"), "x");
    }

    #[test]
    fn refs_are_inlined_and_cycles_bounded() {
        let doc = json!({
            "components": {"schemas": {
                "Node": {"type": "object", "properties": {"next": {"$ref": "#/components/schemas/Node"}}},
                "Id": {"type": "string"}
            }}
        });
        let id = resolve(&doc, &json!({"$ref": "#/components/schemas/Id"}));
        assert_eq!(id, json!({"type": "string"}));
        let missing = resolve(&doc, &json!({"$ref": "other.yaml#/X"}));
        assert_eq!(missing, json!({}));
        // A cycle is cut where it closes.
        let node = resolve(&doc, &json!({"$ref": "#/components/schemas/Node"}));
        assert_eq!(node["type"], "object");
        assert_eq!(node["properties"]["next"], json!({}));
    }

    #[test]
    fn ref_fan_out_is_bounded() {
        // Each level references the next twice: 2^40 nodes if fully inlined.
        let mut schemas = Map::new();
        for i in 0..40 {
            schemas.insert(
                format!("L{i}"),
                json!({"type": "object", "properties": {
                    "a": {"$ref": format!("#/components/schemas/L{}", i + 1)},
                    "b": {"$ref": format!("#/components/schemas/L{}", i + 1)}
                }}),
            );
        }
        schemas.insert("L40".to_string(), json!({"type": "string"}));
        let doc = json!({"components": {"schemas": schemas}});
        let started = std::time::Instant::now();
        let out = resolve(&doc, &json!({"$ref": "#/components/schemas/L0"}));
        assert_eq!(out["type"], "object");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
