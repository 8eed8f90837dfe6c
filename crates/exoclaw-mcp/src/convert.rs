//! Between MCP's shapes and exoclaw's: a server's tool becomes a [`ToolSpec`] under a namespaced
//! name with a [`ToolEffect`] from its annotations; a tool's result becomes the text the model
//! reads.

use exoclaw_types::{ToolEffect, ToolSpec};
use rmcp::model::{CallToolResult, ContentBlock, ResourceContents, ToolAnnotations};
use serde_json::Value;

/// Between the server's name and the tool's in a namespaced name: `files__read_file`.
pub const SEPARATOR: &str = "__";

/// The longest tool name the vendors accept (OpenAI: `^[a-zA-Z0-9_-]{1,64}$`).
pub const MAX_NAME: usize = 64;

/// `server__tool`, with every character the vendors refuse in a tool name replaced by `_`, cut to
/// [`MAX_NAME`] characters.
pub fn namespaced(server: &str, tool: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
    };
    let mut name = format!("{}{SEPARATOR}{}", clean(server), clean(tool));
    name.truncate(MAX_NAME);
    name
}

/// What a tool does to the world, from its annotations (which are hints: the default is to ask).
///
/// `readOnlyHint: true` is [`ToolEffect::ReadOnly`]; otherwise a tool that says it reaches an open
/// world (`openWorldHint: true`) is [`ToolEffect::External`]; everything else, a tool without
/// annotations included, is [`ToolEffect::Mutating`].
pub fn effect(annotations: Option<&ToolAnnotations>) -> ToolEffect {
    match annotations {
        Some(a) if a.read_only_hint == Some(true) => ToolEffect::ReadOnly,
        Some(a) if a.open_world_hint == Some(true) => ToolEffect::External,
        _ => ToolEffect::Mutating,
    }
}

/// The spec the model sees for server `server`'s `tool`, or why it cannot be offered (its input
/// schema is not a valid JSON Schema of an object).
pub fn spec(server: &str, tool: &rmcp::model::Tool) -> Result<ToolSpec, String> {
    let schema = Value::Object(tool.input_schema.as_ref().clone());
    if let Err(err) = jsonschema::meta::validate(&schema) {
        return Err(format!("its input schema is not valid JSON Schema: {err}"));
    }
    if schema.get("type").is_some_and(|t| t != "object") {
        return Err(format!("its input schema describes a {}, not an object of arguments", schema["type"]));
    }
    let description = match (&tool.description, &tool.title) {
        (Some(description), _) => description.to_string(),
        (None, Some(title)) => title.clone(),
        (None, None) => format!("`{}` from the MCP server `{server}`", tool.name),
    };
    Ok(ToolSpec { name: namespaced(server, &tool.name), description, input_schema: schema })
}

/// The text the model reads for a tool's result: its text blocks in order; other blocks
/// described (an image is not sent as text); the structured result when there is no text.
pub fn result_text(result: &CallToolResult) -> String {
    let mut parts: Vec<String> = Vec::new();
    for block in &result.content {
        match block {
            ContentBlock::Text(text) => parts.push(text.text.clone()),
            ContentBlock::Image(image) => {
                parts.push(format!("[image: {}, {} bytes base64]", image.mime_type, image.data.len()))
            }
            ContentBlock::Audio(audio) => {
                parts.push(format!("[audio: {}, {} bytes base64]", audio.mime_type, audio.data.len()))
            }
            ContentBlock::Resource(embedded) => parts.push(resource_text(&embedded.resource)),
            ContentBlock::ResourceLink(link) => {
                parts.push(format!("[resource: {} ({})]", link.uri, link.name))
            }
            other => parts.push(format!(
                "[content exoclaw cannot show: {}]",
                serde_json::to_string(other).unwrap_or_default()
            )),
        }
    }
    if parts.is_empty()
        && let Some(structured) = &result.structured_content
    {
        return structured.to_string();
    }
    parts.join("\n")
}

/// One content block as text, as [`result_text`] shows it.
pub fn block_text(block: &ContentBlock) -> String {
    result_text(&CallToolResult::success(vec![block.clone()]))
}

/// A resource's contents as text: the text itself, or a line describing a binary one.
pub fn resource_text(contents: &ResourceContents) -> String {
    match contents {
        ResourceContents::TextResourceContents { text, .. } => text.clone(),
        ResourceContents::BlobResourceContents { uri, mime_type, blob, .. } => format!(
            "[binary resource {uri}: {}, {} bytes base64]",
            mime_type.as_deref().unwrap_or("unknown type"),
            blob.len()
        ),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    fn tool(value: Value) -> rmcp::model::Tool {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn names_are_namespaced_and_cleaned_for_the_vendors() {
        assert_eq!(namespaced("files", "read_file"), "files__read_file");
        assert_eq!(namespaced("my server", "get.thing/v2"), "my_server__get_thing_v2");
        assert_eq!(namespaced("s", &"x".repeat(100)).len(), MAX_NAME);
    }

    #[test]
    fn annotations_decide_the_effect_and_no_annotations_ask() {
        let read: ToolAnnotations = serde_json::from_value(json!({"readOnlyHint": true})).unwrap();
        let open: ToolAnnotations = serde_json::from_value(json!({"openWorldHint": true})).unwrap();
        let destructive: ToolAnnotations = serde_json::from_value(json!({"destructiveHint": true})).unwrap();
        assert_eq!(effect(Some(&read)), ToolEffect::ReadOnly);
        assert_eq!(effect(Some(&open)), ToolEffect::External);
        assert_eq!(effect(Some(&destructive)), ToolEffect::Mutating);
        assert_eq!(effect(None), ToolEffect::Mutating);
    }

    #[test]
    fn a_tool_becomes_a_namespaced_spec_with_its_schema() {
        let t = tool(json!({
            "name": "echo", "description": "Echoes back the input",
            "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}}
        }));
        let spec = spec("everything", &t).unwrap();
        assert_eq!(spec.name, "everything__echo");
        assert_eq!(spec.description, "Echoes back the input");
        assert_eq!(spec.input_schema["properties"]["message"]["type"], "string");
    }

    #[test]
    fn an_invalid_schema_is_refused_with_the_reason() {
        let t = tool(json!({"name": "bad", "inputSchema": {"type": 42}}));
        assert!(spec("s", &t).unwrap_err().contains("not valid JSON Schema"));
        let t = tool(json!({"name": "bad", "inputSchema": {"type": "string"}}));
        assert!(spec("s", &t).unwrap_err().contains("not an object"));
    }

    #[test]
    fn text_blocks_are_joined_and_others_described() {
        let result: CallToolResult = serde_json::from_value(json!({"content": [
            {"type": "text", "text": "Echo: hi"},
            {"type": "image", "data": "aGVsbG8=", "mimeType": "image/png"},
            {"type": "resource", "resource": {"uri": "test://1", "text": "inner"}}
        ]}))
        .unwrap();
        assert_eq!(result_text(&result), "Echo: hi\n[image: image/png, 8 bytes base64]\ninner");
    }

    #[test]
    fn a_structured_only_result_is_shown_as_json() {
        let result: CallToolResult =
            serde_json::from_value(json!({"content": [], "structuredContent": {"sum": 3}})).unwrap();
        assert_eq!(result_text(&result), r#"{"sum":3}"#);
    }
}
