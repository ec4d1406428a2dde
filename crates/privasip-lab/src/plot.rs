//! Figures: histograms of INVITE->180 times, as the paper's Figures 2
//! and 3 draw them, in SVG and PNG with axes and labels (plotters).
//!
//! Text needs a font: DejaVu Sans from Debian's `fonts-dejavu-core` (the
//! scripts install it), read once and handed to plotters' own renderer,
//! so no system font library is linked.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

/// Where Debian puts the font (`fonts-dejavu-core`).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Registers [`FONT`] as plotters' `sans-serif`, once per process.
fn font() -> Result<()> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    READY
        .get_or_init(|| {
            let bytes = std::fs::read(FONT).map_err(|e| {
                format!("cannot read {FONT} ({e}): `apt-get install fonts-dejavu-core`")
            })?;
            // plotters keeps fonts for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{FONT} is not a font plotters can read"))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// One histogram: `counts[i]` calls took from `lo + i*width` ms to the
/// next bin's start (the last bin holds everything beyond).
pub struct Histogram<'a> {
    /// What was measured, for the title.
    pub title: &'a str,
    /// The first bin's start, ms.
    pub lo: f64,
    /// Every bin's width, ms.
    pub width: f64,
    /// Calls per bin.
    pub counts: &'a [usize],
}

impl Histogram<'_> {
    /// Writes the figure to `stem`.svg and `stem`.png.
    pub fn write(&self, stem: &Path) -> Result<()> {
        font()?;
        let svg = stem.with_extension("svg");
        self.draw(SVGBackend::new(&svg, SIZE).into_drawing_area())
            .with_context(|| format!("cannot draw {}", svg.display()))?;
        let png = stem.with_extension("png");
        self.draw(BitMapBackend::new(&png, SIZE).into_drawing_area())
            .with_context(|| format!("cannot draw {}", png.display()))?;
        Ok(())
    }

    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let bins = self.counts.len().max(1);
        let hi = self.lo + self.width * bins as f64;
        let most = self.counts.iter().copied().max().unwrap_or(0).max(1);
        // Head room above the tallest bar for its count.
        let top = most + most / 8 + 1;
        let calls: usize = self.counts.iter().sum();
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{} ({calls} calls)", self.title),
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(52)
            .build_cartesian_2d(self.lo..hi, 0..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("INVITE -> 180 (ms)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc("calls")
            .axis_desc_style(("sans-serif", 15))
            .label_style(("sans-serif", 13))
            .draw()?;
        let bar = RGBColor(0x44, 0x77, 0xaa);
        chart.draw_series(self.counts.iter().enumerate().map(|(i, &n)| {
            let x = self.lo + self.width * i as f64;
            let mut r = Rectangle::new([(x, 0), (x + self.width, n)], bar.filled());
            r.set_margin(0, 0, 1, 1);
            r
        }))?;
        root.present()?;
        Ok(())
    }
}

/// Figure size in pixels (the SVG's too).
const SIZE: (u32, u32) = (720, 420);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg_with_axes_and_a_png() {
        // scripts/test.sh installs it.
        assert!(
            std::fs::metadata(FONT).is_ok(),
            "{FONT} is missing: `apt-get install fonts-dejavu-core`"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let stem = dir.path().join("hist-x");
        Histogram {
            title: "INVITE->180, plain SIP over Tor",
            lo: 800.0,
            width: 100.0,
            counts: &[1, 4, 9, 3, 0, 1],
        }
        .write(&stem)
        .expect("drawn");
        let svg = std::fs::read_to_string(stem.with_extension("svg")).expect("svg");
        assert!(svg.contains("INVITE -&gt; 180 (ms)") || svg.contains("INVITE -> 180 (ms)"));
        assert!(svg.contains("calls"));
        let png = std::fs::read(stem.with_extension("png")).expect("png");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    }
}
