//! Structured answers: an answer asked for in a [`ResponseFormat`] read as JSON and checked
//! against its schema, so a front end hands on only JSON that validates.
//!
//! The embedded model cannot answer outside the schema (its decoding is constrained), and vendors'
//! strict modes promise the same; other answers are checked here. The schema is compiled with the
//! `jsonschema` crate (drafts 4 to 2020-12; `$ref`s outside the schema are not fetched).

use exoclaw_types::ResponseFormat;
use jsonschema::Validator;
use serde_json::Value;

/// The most schema violations an error lists.
const MAX_LISTED: usize = 3;

/// Why an answer is not the structured answer that was asked for, or why a schema cannot check one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StructuredError {
    /// The schema itself is not a valid JSON schema.
    #[error("the JSON schema is not valid: {0}; fix the schema file")]
    BadSchema(String),
    /// The answer is not JSON at all.
    #[error("the answer is not JSON ({0}); try a larger model or a higher --max-tokens")]
    NotJson(String),
    /// The answer is JSON that breaks the schema.
    #[error("the answer does not fit the schema: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// A compiled response format: checks answers against it.
pub struct AnswerFormat {
    validator: Option<Validator>,
}

impl std::fmt::Debug for AnswerFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerFormat").field("schema", &self.validator.is_some()).finish()
    }
}

impl AnswerFormat {
    /// Compiles `format`'s schema (free text has none: any answer goes).
    pub fn new(format: &ResponseFormat) -> Result<Self, StructuredError> {
        let validator = format
            .schema()
            .map(|schema| {
                jsonschema::validator_for(&schema).map_err(|e| StructuredError::BadSchema(e.to_string()))
            })
            .transpose()?;
        Ok(Self { validator })
    }

    /// The answer as JSON, if it is JSON that fits the schema; free text comes back as a string.
    pub fn check(&self, answer: &str) -> Result<Value, StructuredError> {
        let Some(validator) = &self.validator else { return Ok(Value::String(answer.to_owned())) };
        let value: Value =
            serde_json::from_str(answer.trim()).map_err(|e| StructuredError::NotJson(e.to_string()))?;
        if validator.is_valid(&value) {
            return Ok(value);
        }
        let mut errors = validator.iter_errors(&value);
        let mut listed: Vec<String> = errors
            .by_ref()
            .take(MAX_LISTED)
            .map(|e| {
                let at = e.instance_path().to_string();
                let at = if at.is_empty() { "the answer".to_owned() } else { format!("at {at}") };
                format!("{at}: {}", e.masked())
            })
            .collect();
        let more = errors.count();
        if more > 0 {
            listed.push(format!("and {more} more"));
        }
        Err(StructuredError::Invalid(listed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exoclaw_types::JsonSchemaFormat;
    use serde_json::json;

    fn place() -> AnswerFormat {
        AnswerFormat::new(&ResponseFormat::JsonSchema(JsonSchemaFormat {
            name: "place".into(),
            description: None,
            schema: json!({"type": "object", "properties": {"city": {"type": "string"},
                "population": {"type": "integer", "minimum": 0}}, "required": ["city", "population"]}),
            strict: false,
        }))
        .unwrap()
    }

    #[test]
    fn an_answer_that_fits_comes_back_as_json() {
        let value = place().check(" {\"city\": \"Oslo\", \"population\": 709037}\n").unwrap();
        assert_eq!(value, json!({"city": "Oslo", "population": 709037}));
    }

    #[test]
    fn an_answer_that_breaks_the_schema_says_where() {
        let error = place().check("{\"city\": 3, \"population\": -1}").unwrap_err().to_string();
        assert!(error.contains("at /city") && error.contains("at /population"), "{error}");
        let error = place().check("{\"city\": \"Oslo\"}").unwrap_err().to_string();
        assert!(error.contains("population"), "{error}");
    }

    #[test]
    fn prose_or_a_cut_answer_is_not_json() {
        for answer in ["Oslo has 709037 people.", "{\"city\": \"Os"] {
            assert!(matches!(place().check(answer), Err(StructuredError::NotJson(_))), "{answer}");
        }
    }

    #[test]
    fn a_json_object_format_takes_any_object_and_a_bad_schema_is_refused() {
        let object = AnswerFormat::new(&ResponseFormat::JsonObject).unwrap();
        assert!(object.check("{\"a\": [1]}").is_ok());
        assert!(matches!(object.check("[1]"), Err(StructuredError::Invalid(_))));
        let bad = ResponseFormat::JsonSchema(JsonSchemaFormat {
            name: "bad".into(),
            description: None,
            schema: json!({"type": "no-such-type"}),
            strict: false,
        });
        assert!(matches!(AnswerFormat::new(&bad), Err(StructuredError::BadSchema(_))));
    }
}
