//! Class names: one per line in a text file, or the class index when there is none.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Largest label file read; ImageNet's 1000 names take about 10 KiB.
const MAX_LABEL_BYTES: u64 = 16 << 20;

pub struct Labels {
    names: Vec<String>,
    /// The file the names came from, for messages.
    path: Option<PathBuf>,
}

impl Labels {
    /// Labels from `explicit`, else from `labels.txt` beside the model, else none.
    pub fn for_model(explicit: Option<&Path>, model: &Path) -> Result<Labels> {
        let sibling = model.parent().map(|d| d.join("labels.txt"));
        let path: Option<PathBuf> = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => sibling.filter(|p| p.is_file()),
        };
        match path {
            Some(p) => Labels::read(&p),
            None => Ok(Labels {
                names: Vec::new(),
                path: None,
            }),
        }
    }

    pub fn read(path: &Path) -> Result<Labels> {
        let len = std::fs::metadata(path)
            .with_context(|| format!("cannot read labels {}", path.display()))?
            .len();
        if len > MAX_LABEL_BYTES {
            bail!(
                "labels {}: {len} bytes is too large for a label file",
                path.display()
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read labels {}", path.display()))?;
        let mut names: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
        // Editors often leave blank lines at the end; they name no class.
        while names.last().is_some_and(String::is_empty) {
            names.pop();
        }
        if names.is_empty() {
            bail!("labels {}: the file names no classes", path.display());
        }
        Ok(Labels {
            names,
            path: Some(path.to_path_buf()),
        })
    }

    /// Checks the file against the model's class count (an empty set always fits).
    pub fn check(&self, classes: usize) -> Result<()> {
        if let (Some(path), false) = (&self.path, self.names.len() == classes) {
            bail!(
                "labels {}: the file has {} names but the model has {classes} classes",
                path.display(),
                self.names.len()
            );
        }
        Ok(())
    }

    pub fn name(&self, class: usize) -> String {
        self.names
            .get(class)
            .cloned()
            .unwrap_or_else(|| format!("class {class}"))
    }
}
