//! The output files (`--csv`, `--json`, `--plot`): created before
//! measuring, so that a bad path or a plot name not ending in `.svg` fails
//! at once instead of after the sweep, and written from the report after
//! it.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::csv::csv;
use super::plot;
use super::report::JsonReport;
use crate::cli::BenchArgs;

/// The output files, created before measuring so that a bad path fails at
/// once instead of after the sweep.
pub struct Outputs {
    csv: Option<(PathBuf, File)>,
    json: Option<(PathBuf, File)>,
    plot: Option<PathBuf>,
}

impl Outputs {
    pub fn open(args: &BenchArgs) -> Result<Outputs, String> {
        if let Some(plot) = &args.plot {
            let svg = plot
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
            if !svg {
                return Err(format!(
                    "--plot {}: the plot is SVG, and the file name must end in .svg (convert it \
                     afterwards for another format, e.g. rsvg-convert plot.svg -o plot.png)",
                    plot.display()
                ));
            }
        }
        let create = |path: &Path| {
            File::create(path).map_err(|e| format!("cannot write {}: {e}", path.display()))
        };
        let csv = match &args.csv {
            Some(path) => Some((path.clone(), create(path)?)),
            None => None,
        };
        let json = match &args.json {
            Some(path) => Some((path.clone(), create(path)?)),
            None => None,
        };
        // The plot is written by path (the SVG backend opens it): check it
        // the same way now.
        if let Some(path) = &args.plot {
            create(path)?;
        }
        Ok(Outputs {
            csv,
            json,
            plot: args.plot.clone(),
        })
    }

    pub fn write(self, report: &JsonReport<'_>) -> anyhow::Result<()> {
        let fail = |path: &Path, e: &dyn std::fmt::Display| {
            anyhow::anyhow!("cannot write {}: {e}", path.display())
        };
        if let Some((path, mut file)) = self.csv {
            file.write_all(csv(report).as_bytes())
                .map_err(|e| fail(&path, &e))?;
        }
        if let Some((path, mut file)) = self.json {
            let text = serde_json::to_string_pretty(report)?;
            file.write_all(text.as_bytes())
                .map_err(|e| fail(&path, &e))?;
        }
        if let Some(path) = self.plot {
            if report.results.iter().any(|p| p.workers.is_some()) {
                plot::draw(&path, report).map_err(|e| fail(&path, &e))?;
            } else {
                // Created empty before the run: leave no empty file behind.
                let _ = std::fs::remove_file(&path);
                eprintln!("bench: no point measured, no plot drawn");
            }
        }
        Ok(())
    }
}
