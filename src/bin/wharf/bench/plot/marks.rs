//! What both charts share: the colours, the legend boxed in the margin
//! right of each chart ([`LEGEND`] wide, so it never hides a point or a
//! bar), the pool sizes under their columns, and the [`Columns`] themselves.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use wharf::bench::BenchPoint;

pub const SERVICE: RGBColor = RGBColor(70, 130, 180);
pub const QUEUE: RGBColor = RGBColor(240, 160, 60);
pub const CLIENT: RGBColor = RGBColor(200, 30, 30);
pub const THROUGHPUT: RGBColor = RGBColor(30, 60, 160);
pub const MARK: RGBColor = RGBColor(20, 150, 60);

/// The pool sizes measured: one evenly spaced column each, in the order
/// of the sweep.
pub struct Columns<'a> {
    /// The points measured with a pool size.
    pub points: Vec<&'a BenchPoint>,
    /// Their pool sizes.
    pub pools: Vec<usize>,
    /// The recommended pool's column, if it was measured.
    pub recommended: Option<usize>,
}

/// The width kept right of each chart for its legend, which then never
/// hides a point or a bar.
pub const LEGEND: u32 = 215;

/// A legend entry's sample.
pub enum Key {
    Line(RGBColor),
    Dashed(RGBColor),
    Bar(RGBColor),
    Ring,
}

/// The legend, boxed in the margin right of `plot` (a chart's plotting
/// area), top-aligned with it.
pub fn legend<X, Y>(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    plot: &DrawingArea<SVGBackend<'_>, Cartesian2d<X, Y>>,
    keys: &[(Key, String)],
) -> Result<(), Box<dyn std::error::Error>>
where
    X: Ranged,
    Y: Ranged,
{
    let (px, py) = plot.get_base_pixel();
    let (w, _) = plot.dim_in_pixel();
    let (left, top) = (px + w as i32 + 10, py);
    let row = 22;
    root.draw(&Rectangle::new(
        [
            (left, top),
            (
                left + LEGEND as i32 - 14,
                top + 10 + row * keys.len() as i32,
            ),
        ],
        BLACK.mix(0.3),
    ))?;
    let font = ("sans-serif", 14)
        .into_font()
        .into_text_style(root)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (key, label)) in keys.iter().enumerate() {
        let (x, y) = (left + 8, top + 5 + row / 2 + row * i as i32);
        match key {
            Key::Line(color) => root.draw(&PathElement::new(
                [(x, y), (x + 22, y)],
                color.stroke_width(2),
            ))?,
            Key::Dashed(color) => {
                for dash in [0, 9, 18] {
                    let end = (dash + 5).min(22);
                    root.draw(&PathElement::new(
                        [(x + dash, y), (x + end, y)],
                        color.stroke_width(2),
                    ))?;
                }
            }
            Key::Bar(color) => root.draw(&Rectangle::new(
                [(x, y - 6), (x + 22, y + 6)],
                color.filled(),
            ))?,
            Key::Ring => root.draw(&Circle::new((x + 11, y), 7, MARK.stroke_width(2)))?,
        }
        root.draw(&Text::new(label.as_str(), (x + 30, y), font.clone()))?;
    }
    Ok(())
}

/// The pool sizes under their columns, drawn here rather than by the mesh:
/// its tick algorithm picks round numbers, not categories. `at(i)` is the
/// pixel where column `i` meets the x axis.
pub fn x_ticks(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    at: impl Fn(usize) -> (i32, i32),
    pools: &[usize],
) -> Result<(), Box<dyn std::error::Error>> {
    let style = ("sans-serif", 15)
        .into_font()
        .into_text_style(root)
        .pos(Pos::new(HPos::Center, VPos::Top));
    for (i, workers) in pools.iter().enumerate() {
        let (px, py) = at(i);
        root.draw(&Text::new(workers.to_string(), (px, py + 7), style.clone()))?;
        root.draw(&PathElement::new([(px, py), (px, py + 5)], BLACK))?;
    }
    Ok(())
}
