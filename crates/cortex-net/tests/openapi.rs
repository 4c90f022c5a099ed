//! OpenAPI import, and imported actions executed against the loopback receiver.

#![allow(clippy::unwrap_used)]

mod support;

use cortex_net::{
    ActionAuth, ActionSpec, GuardedClient, HttpMethod, ImportError, NetPolicy, execute_action,
    import_openapi, import_openapi_str,
};
use http::Method;
use serde_json::{Value, json};

const STORE_YAML: &str = r##"
openapi: 3.0.3
info: {title: Store, version: "1"}
servers:
  - url: https://api.store.example/v1
paths:
  /orders/{order_id}:
    parameters:
      - name: order_id
        in: path
        required: true
        description: The order number
        schema: {type: string}
    get:
      operationId: getOrderStatus
      summary: Look up an order
      parameters:
        - name: expand
          in: query
          schema: {type: boolean}
        - name: X-Trace
          in: header
          schema: {type: string}
    delete:
      description: Cancel an order
    head:
      operationId: headOrder
  /orders:
    post:
      operationId: createOrder
      parameters:
        - $ref: '#/components/parameters/DryRun'
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/NewOrder'}
    put:
      operationId: createOrder
      requestBody:
        content:
          application/json:
            schema:
              type: array
              items: {type: string}
components:
  parameters:
    DryRun: {name: dry_run, in: query, required: false, schema: {type: boolean}}
  schemas:
    NewOrder:
      type: object
      required: [sku, qty]
      properties:
        sku: {type: string}
        qty: {type: integer, minimum: 1}
"##;

fn by_name<'a>(specs: &'a [ActionSpec], name: &str) -> &'a ActionSpec {
    specs
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no action {name}"))
}

#[test]
fn imports_one_action_per_operation() {
    let specs = import_openapi_str(STORE_YAML, "").unwrap();
    let mut names: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "create_order",
            "create_order_2",
            "delete_orders_order_id",
            "get_order_status"
        ]
    );

    let get = by_name(&specs, "get_order_status");
    assert_eq!(get.method, HttpMethod::Get);
    assert_eq!(get.webhook_url, "https://api.store.example/v1");
    assert_eq!(get.path_template.as_deref(), Some("/orders/{order_id}"));
    assert_eq!(get.description.as_deref(), Some("Look up an order"));
    assert_eq!(get.auth, ActionAuth::None);
    assert_eq!(
        get.parameters_schema,
        json!({
            "type": "object",
            "properties": {
                "order_id": {"type": "string", "description": "The order number"},
                "expand": {"type": "boolean"}
            },
            "required": ["order_id"]
        })
    );
    assert_eq!(
        get.query_schema,
        Some(json!({"type": "object", "properties": {"expand": {"type": "boolean"}}}))
    );
    assert_eq!(get.body_schema, None);

    let delete = by_name(&specs, "delete_orders_order_id");
    assert_eq!(delete.method, HttpMethod::Delete);
    assert_eq!(delete.description.as_deref(), Some("Cancel an order"));
    assert_eq!(delete.parameters_schema["required"], json!(["order_id"]));

    let post = by_name(&specs, "create_order");
    assert_eq!(post.method, HttpMethod::Post);
    assert_eq!(
        post.parameters_schema,
        json!({
            "type": "object",
            "properties": {
                "dry_run": {"type": "boolean"},
                "sku": {"type": "string"},
                "qty": {"type": "integer", "minimum": 1}
            },
            "required": ["qty", "sku"]
        })
    );
    assert_eq!(
        post.body_schema.as_ref().unwrap()["required"],
        json!(["sku", "qty"])
    );
    assert_eq!(
        post.query_schema.as_ref().unwrap()["properties"],
        json!({"dry_run": {"type": "boolean"}})
    );

    let put = by_name(&specs, "create_order_2");
    assert_eq!(
        put.parameters_schema["properties"]["body"],
        json!({"type": "array", "items": {"type": "string"}})
    );
    assert!(
        put.parameters_schema.get("required").is_none(),
        "optional request body"
    );
}

#[test]
fn json_and_yaml_give_the_same_actions() {
    let yaml: Value = serde_norway::from_str(STORE_YAML).unwrap();
    let json_text = serde_json::to_string(&yaml).unwrap();
    let from_json = import_openapi_str(&json_text, "https://other.example/api/").unwrap();
    let from_value = import_openapi(&yaml, "https://other.example/api").unwrap();
    assert_eq!(from_json, from_value);
    assert!(
        from_json
            .iter()
            .all(|s| s.webhook_url == "https://other.example/api")
    );
}

#[test]
fn rejects_what_it_cannot_import() {
    assert!(matches!(
        import_openapi(&json!({"swagger": "2.0", "paths": {}}), "https://x"),
        Err(ImportError::NotOpenApi(_))
    ));
    assert!(matches!(
        import_openapi(&json!({"openapi": "2.0"}), "https://x"),
        Err(ImportError::NotOpenApi(_))
    ));
    assert!(matches!(
        import_openapi(
            &json!({"openapi": "3.1.0", "servers": [{"url": "/relative"}]}),
            ""
        ),
        Err(ImportError::NoBaseUrl)
    ));
    assert!(matches!(
        import_openapi_str("{ not json", "https://x"),
        Err(ImportError::Parse(_))
    ));
    assert!(matches!(
        import_openapi_str("openapi: [unclosed", "https://x"),
        Err(ImportError::Parse(_))
    ));
    assert_eq!(
        import_openapi(&json!({"openapi": "3.1.0"}), "https://x").unwrap(),
        Vec::<ActionSpec>::new()
    );
}

#[tokio::test]
async fn imported_actions_execute() {
    let rx = support::start().await;
    let specs = import_openapi_str(STORE_YAML, &rx.url("/v1")).unwrap();
    let client = GuardedClient::new(NetPolicy::webhook().with_allowed_host("127.0.0.1")).unwrap();

    let out = execute_action(
        &client,
        by_name(&specs, "get_order_status"),
        &json!({"order_id": "ORD-1234", "expand": true}),
    )
    .await;
    assert!(out.ok, "{out:?}");
    let out = execute_action(
        &client,
        by_name(&specs, "create_order"),
        &json!({"sku": "tea", "qty": 2, "dry_run": true}),
    )
    .await;
    assert!(out.ok, "{out:?}");
    let bad = execute_action(
        &client,
        by_name(&specs, "create_order"),
        &json!({"sku": "tea", "qty": 0}),
    )
    .await;
    assert!(!bad.ok);
    assert_eq!(bad.attempts, 0);
    let out = execute_action(
        &client,
        by_name(&specs, "create_order_2"),
        &json!({"body": ["a", "b"]}),
    )
    .await;
    assert!(out.ok, "{out:?}");

    let reqs = rx.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].method, Method::GET);
    assert_eq!(reqs[0].path, "/v1/orders/ORD-1234");
    assert_eq!(reqs[0].query.as_deref(), Some("expand=true"));
    assert_eq!(reqs[1].method, Method::POST);
    assert_eq!(reqs[1].path, "/v1/orders");
    assert_eq!(reqs[1].query.as_deref(), Some("dry_run=true"));
    assert_eq!(reqs[1].json(), json!({"sku": "tea", "qty": 2}));
    assert_eq!(reqs[2].method, Method::PUT);
    assert_eq!(reqs[2].json(), json!(["a", "b"]));
}

#[test]
fn action_spec_serde_shape_and_redacted_debug() {
    let spec: ActionSpec = serde_json::from_value(json!({
        "name": "get_order_status",
        "method": "get",
        "webhook_url": "https://api.store.example",
        "path_template": "/orders/{order_id}",
        "auth": {"type": "oauth2", "access_token": "very-secret"},
        "parameters_schema": {"type": "object"}
    }))
    .unwrap();
    assert_eq!(spec.method, HttpMethod::Get);
    assert_eq!(
        spec.auth,
        ActionAuth::OAuth2 {
            access_token: "very-secret".into()
        }
    );
    let debug = format!("{spec:?}");
    assert!(!debug.contains("very-secret"), "{debug}");
    assert!(debug.contains("<redacted>"));
    let back = serde_json::to_value(&spec).unwrap();
    assert_eq!(back["method"], "GET");
    assert_eq!(back["auth"]["type"], "oauth2");
    for (auth, tag) in [
        (
            ActionAuth::ApiKey {
                header: "X-Key".into(),
                value: "v".into(),
            },
            "api_key",
        ),
        (ActionAuth::Bearer { token: "t".into() }, "bearer"),
        (
            ActionAuth::Basic {
                user: "u".into(),
                password: "p".into(),
            },
            "basic",
        ),
        (ActionAuth::None, "none"),
    ] {
        let v = serde_json::to_value(&auth).unwrap();
        assert_eq!(v["type"], tag);
        assert_eq!(serde_json::from_value::<ActionAuth>(v).unwrap(), auth);
        let debug = format!("{auth:?}");
        assert!(!debug.contains("\"v\"") && !debug.contains("\"t\"") && !debug.contains("\"p\""));
    }
}
