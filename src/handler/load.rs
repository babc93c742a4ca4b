//! Reading handler files from disk: one file, or a whole directory with cross-file checks.
//! Stage one (TOML syntax) lives here; stage two (keys, types, semantics) is in `build`.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::{Handler, HandlerError, HandlerName, build};

/// Loads one handler file, returning every problem found in it.
pub fn load_file(path: &Path) -> Result<Handler, Vec<HandlerError>> {
    let text = fs::read_to_string(path).map_err(|e| {
        vec![HandlerError::new(
            path,
            "",
            format!("cannot read handler file: {e}"),
        )]
    })?;
    parse_handler(path, &text)
}

/// Parses handler text as if it had been read from `file` (which supplies the default name and
/// is named in errors). Lets `hookwise check` and tests work without touching the disk.
pub fn parse_handler(file: &Path, text: &str) -> Result<Handler, Vec<HandlerError>> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| vec![syntax_error(file, text, &e)])?;
    build::build(file, &table)
}

/// Loads every `*.toml` in `dir`, in file-name order so start-up and `hookwise check` are
/// deterministic. Other files (README.md) and dotfiles (editor swap and lock files) are skipped.
/// Errors from all files are reported together, plus handler names used by more than one file.
pub fn load_dir(dir: &Path) -> Result<Vec<Handler>, Vec<HandlerError>> {
    let dir_error =
        |what: &str, e: std::io::Error| vec![HandlerError::new(dir, "", format!("{what}: {e}"))];
    let entries = fs::read_dir(dir).map_err(|e| dir_error("cannot read handler directory", e))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| dir_error("cannot list handler directory", e))?
            .path();
        if is_handler_file(&path) {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));

    let mut handlers = Vec::new();
    let mut errors = Vec::new();
    let mut first_file: HashMap<HandlerName, PathBuf> = HashMap::new();
    for path in files {
        match load_file(&path) {
            Ok(handler) => match first_file.get(&handler.name) {
                Some(first) => errors.push(HandlerError::new(
                    &path,
                    "name",
                    format!(
                        "duplicate handler name \"{}\": {} already defines it",
                        handler.name,
                        first.display()
                    ),
                )),
                None => {
                    first_file.insert(handler.name.clone(), path);
                    handlers.push(handler);
                }
            },
            Err(mut file_errors) => errors.append(&mut file_errors),
        }
    }
    if errors.is_empty() {
        Ok(handlers)
    } else {
        Err(errors)
    }
}

fn is_handler_file(path: &Path) -> bool {
    let visible = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| !n.starts_with('.'));
    visible && path.extension().is_some_and(|ext| ext == "toml") && path.is_file()
}

fn syntax_error(file: &Path, text: &str, e: &toml::de::Error) -> HandlerError {
    let message = e.message().trim_end();
    let message = match e.span() {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            format!("invalid TOML at line {line}, column {column}: {message}")
        }
        None => format!("invalid TOML: {message}"),
    };
    HandlerError::new(file, "", message)
}

/// 1-based line and column (in characters, as editors count) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
