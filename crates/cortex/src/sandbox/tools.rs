//! The agent's built-in tools over its project's workspace: `list_files`, `read_file`,
//! `write_file`, `run_command`. Offered to the model before the agent's actions; a failure is
//! an error result for the model (the run goes on); every result is cut to
//! `sandbox.tool_result_chars` with a note saying how much was cut.

use std::time::Instant;

use async_trait::async_trait;
use cortex_llm::{ToolCall, ToolDef};
use serde::Deserialize;
use serde_json::json;

use super::{CommandError, Sandbox, Workspace};
use crate::actions::tools::ToolOutcome;
use crate::pipeline::engine::ToolSet;

/// The built-in tools' names (an agent action with one of these names is not offered).
pub const NAMES: [&str; 4] = ["list_files", "read_file", "write_file", "run_command"];

/// The definitions offered to the model.
pub fn defs(sandbox: &Sandbox) -> Vec<ToolDef> {
    let cfg = sandbox.config();
    let path = json!({"type": "string", "description": "Relative to /workspace, or an absolute path under /workspace"});
    vec![
        ToolDef {
            name: "list_files".into(),
            description:
                "List the files in the workspace (/workspace) recursively, with their sizes.".into(),
            parameters: json!({"type": "object", "properties": {
                "path": {"type": "string", "description": "A directory under /workspace; default: all of it"}
            }}),
        },
        ToolDef {
            name: "read_file".into(),
            description: "Read a text file from the workspace.".into(),
            parameters: json!({"type": "object", "properties": {"path": path}, "required": ["path"]}),
        },
        ToolDef {
            name: "write_file".into(),
            description:
                "Create or replace a file in the workspace (directories are created as needed)."
                    .into(),
            parameters: json!({"type": "object", "properties": {
                "path": path,
                "content": {"type": "string", "description": "The whole new content"}
            }, "required": ["path", "content"]}),
        },
        ToolDef {
            name: "run_command".into(),
            description: format!(
                "Run a bash command in /workspace and get its exit code and output (stdout and stderr). \
                 Isolated: no network; only /workspace and a private /tmp are writable; files in \
                 /workspace persist between commands, processes do not. Timeout {} s unless given, at most {} s.",
                cfg.command_timeout_seconds, cfg.max_command_timeout_seconds
            ),
            parameters: json!({"type": "object", "properties": {
                "command": {"type": "string"},
                "timeout_seconds": {"type": "integer", "minimum": 1, "maximum": cfg.max_command_timeout_seconds}
            }, "required": ["command"]}),
        },
    ]
}

/// A run's built-in tools: its project's workspace on this node's sandbox.
pub struct SandboxTools<'a> {
    pub sandbox: &'a Sandbox,
    pub workspace: Workspace,
}

#[derive(Deserialize)]
struct ListArgs {
    #[serde(default)]
    path: Option<String>,
}

#[derive(Deserialize)]
struct PathArgs {
    path: String,
}

#[derive(Deserialize)]
struct WriteArgs {
    path: String,
    content: String,
}

#[derive(Deserialize)]
struct CommandArgs {
    command: String,
    #[serde(default)]
    timeout_seconds: Option<u64>,
}

fn args<T: serde::de::DeserializeOwned>(call: &ToolCall) -> Result<T, String> {
    let text = if call.arguments.trim().is_empty() {
        "{}"
    } else {
        call.arguments.as_str()
    };
    serde_json::from_str(text).map_err(|e| format!("invalid arguments for {}: {e}", call.name))
}

/// `text` cut to `limit` characters: the head and the tail kept, with a note of what was cut.
pub fn cap(text: &str, limit: usize) -> String {
    let total = text.chars().count();
    if total <= limit {
        return text.to_owned();
    }
    let head = limit * 3 / 4;
    let tail = limit - head;
    let cut = total - head - tail;
    let mut out: String = text.chars().take(head).collect();
    out.push_str(&format!("\n[… {cut} characters cut …]\n"));
    out.extend(text.chars().skip(total - tail));
    out
}

impl SandboxTools<'_> {
    async fn dispatch(&self, call: &ToolCall) -> Result<String, String> {
        match call.name.as_str() {
            "list_files" => self.list(args(call)?).await,
            "read_file" => self.read(args(call)?).await,
            "write_file" => self.write(args(call)?).await,
            "run_command" => self.command(args(call)?).await,
            other => Err(format!("unknown tool {other}")),
        }
    }

    async fn list(&self, a: ListArgs) -> Result<String, String> {
        let path = a.path.unwrap_or_default();
        let files = self
            .workspace
            .blocking(move |ws| ws.list(&path))
            .await
            .map_err(|e| e.to_string())?;
        if files.is_empty() {
            return Ok("No files.".into());
        }
        let bytes: u64 = files.iter().map(|f| f.size).sum();
        let mut out = format!("{} files, {bytes} bytes:\n", files.len());
        for f in files {
            out.push_str(&format!("{} ({} bytes)\n", f.path, f.size));
        }
        Ok(out)
    }

    async fn read(&self, a: PathArgs) -> Result<String, String> {
        let max = self.sandbox.config().tool_result_chars as u64 * 4;
        let path = a.path.clone();
        let (bytes, size) = self
            .workspace
            .blocking(move |ws| ws.read(&path, max))
            .await
            .map_err(|e| e.to_string())?;
        let text = match std::str::from_utf8(&bytes) {
            Ok(t) => t.to_owned(),
            // Cut inside a character at the end of what was read: keep the whole ones.
            Err(e) if e.error_len().is_none() => {
                String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned()
            }
            Err(_) => {
                return Err(format!(
                    "{} is a binary file ({size} bytes); inspect it with run_command (e.g. `file`, `xxd | head`)",
                    a.path
                ));
            }
        };
        if size > bytes.len() as u64 {
            return Ok(format!(
                "{text}\n[… the file continues: {} more bytes; read parts of it with run_command, e.g. `sed -n '200,400p' {}`]",
                size - bytes.len() as u64,
                a.path
            ));
        }
        Ok(text)
    }

    async fn write(&self, a: WriteArgs) -> Result<String, String> {
        let (max_file, max_ws) = (
            self.sandbox.max_file_bytes(),
            self.sandbox.config().max_workspace_bytes,
        );
        let len = a.content.len();
        let path = self
            .workspace
            .blocking(move |ws| ws.write(&a.path, a.content.as_bytes(), max_file, max_ws))
            .await
            .map_err(|e| e.to_string())?;
        Ok(format!("Wrote {len} bytes to /workspace/{path}."))
    }

    async fn command(&self, a: CommandArgs) -> Result<String, String> {
        if a.command.trim().is_empty() {
            return Err("command is empty".into());
        }
        let timeout = self.sandbox.timeout(a.timeout_seconds);
        let r = match self.sandbox.run(&self.workspace, &a.command, timeout).await {
            Ok(r) => r,
            Err(e @ (CommandError::Unavailable(_) | CommandError::Spawn(_))) => {
                return Err(e.to_string());
            }
            Err(CommandError::Workspace(e)) => return Err(e.to_string()),
        };
        let mut out = String::new();
        if r.timed_out {
            out.push_str(&format!(
                "timed out after {} s: the command and everything it started were killed\n",
                timeout.as_secs()
            ));
        } else if r.output_exceeded {
            out.push_str(&format!(
                "stopped: the command wrote more than {} bytes of output\n",
                self.sandbox.config().max_output_bytes
            ));
        } else if let Some(code) = r.exit_code {
            out.push_str(&format!("exit code: {code}\n"));
        } else if let Some(sig) = r.signal {
            out.push_str(&format!("killed by signal {sig}\n"));
        }
        out.push_str(&String::from_utf8_lossy(&r.output));
        if r.exit_code == Some(0) && !r.timed_out && !r.output_exceeded {
            Ok(out)
        } else {
            Err(out)
        }
    }
}

#[async_trait]
impl ToolSet for SandboxTools<'_> {
    async fn execute(&self, call: &ToolCall) -> ToolOutcome {
        let started = Instant::now();
        let result = self.dispatch(call).await;
        let limit = self.sandbox.config().tool_result_chars;
        let (ok, content) = match result {
            Ok(c) => (true, cap(&c, limit)),
            Err(e) => (false, cap(&format!("Error: {e}"), limit)),
        };
        ToolOutcome {
            ok,
            content,
            latency_ms: started.elapsed().as_millis() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cap;

    #[test]
    fn long_results_are_cut_with_a_note() {
        assert_eq!(cap("short", 10), "short");
        let long: String = "é".repeat(1000);
        let out = cap(&long, 200);
        assert!(out.contains("[… 800 characters cut …]"), "{out}");
        assert_eq!(out.chars().filter(|c| *c == 'é').count(), 200);
    }
}
