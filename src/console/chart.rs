//! Bar charts as SVG drawn on the server: no script, no inline style (colours
//! come from the stylesheet's classes), a `<title>` and `<desc>` for screen
//! readers, and the numbers themselves in a table beside each chart.

use maud::{html, Markup};

const WIDTH: u32 = 600;
const HEIGHT: u32 = 180;
const LEFT: u32 = 56;
const BOTTOM: u32 = 24;
const TOP: u32 = 10;

/// One bar: its label (shown under some bars) and value.
pub struct Bar {
    pub label: String,
    pub value: u64,
}

/// A bar chart. `id` makes the title/desc ids unique on the page; `class`
/// picks the bar colour from the stylesheet; `format` renders axis values.
pub fn bars(
    id: &str,
    title: &str,
    class: &str,
    data: &[Bar],
    format: &dyn Fn(u64) -> String,
) -> Markup {
    let max = data.iter().map(|b| b.value).max().unwrap_or(0);
    let top = nice_ceiling(max);
    let plot_w = WIDTH - LEFT - 8;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let n = data.len().max(1) as u32;
    let slot = plot_w as f64 / n as f64;
    let bar_w = (slot * 0.7).max(1.0);
    let y_of =
        |v: u64| -> f64 { TOP as f64 + plot_h as f64 - (v as f64 / top as f64) * plot_h as f64 };
    let total: u64 = data.iter().map(|b| b.value).sum();
    let title_id = format!("{id}-title");
    let desc_id = format!("{id}-desc");
    let labelled = format!("{title_id} {desc_id}");
    let desc = format!(
        "{} days; highest {}; total {}.",
        data.len(),
        format(max),
        format(total)
    );
    let view_box = format!("0 0 {WIDTH} {HEIGHT}");
    html! {
        svg.chart viewBox=(view_box) role="img" aria-labelledby=(labelled) preserveAspectRatio="xMidYMid meet" {
            title #(title_id) { (title) }
            desc #(desc_id) { (desc) }
            @for tick in [0, top / 2, top] {
                @let y = format!("{:.1}", y_of(tick));
                line.grid x1=(LEFT) x2=(WIDTH - 8) y1=(y) y2=(y) {}
                text.axis x=(LEFT - 6) y=(y) text-anchor="end" dominant-baseline="middle" { (compact(tick)) }
            }
            @for (i, bar) in data.iter().enumerate() {
                @let x = LEFT as f64 + slot * i as f64 + (slot - bar_w) / 2.0;
                @let y = y_of(bar.value);
                @let h = (TOP as f64 + plot_h as f64 - y).max(0.0);
                rect class=(class) x=(format!("{x:.1}")) y=(format!("{y:.1}")) width=(format!("{bar_w:.1}")) height=(format!("{h:.1}")) {
                    title { (bar.label) ": " (format(bar.value)) }
                }
                // Every seventh day counted back from the last, so labels never collide.
                @if (data.len() - 1 - i).is_multiple_of(7) {
                    text.axis x=(format!("{:.1}", x + bar_w / 2.0)) y=(HEIGHT - 6) text-anchor="middle" { (bar.label) }
                }
            }
        }
    }
}

/// An axis value in a few characters: `950`, `12k`, `1.5M` (the unit is in
/// the caption; exact values are in the bars' tooltips and the table).
fn compact(v: u64) -> String {
    let scaled = |div: f64, unit: &str| {
        let x = v as f64 / div;
        if x >= 10.0 || x.fract() == 0.0 {
            format!("{x:.0}{unit}")
        } else {
            format!("{x:.1}{unit}")
        }
    };
    match v {
        0..1_000 => v.to_string(),
        1_000..1_000_000 => scaled(1e3, "k"),
        1_000_000..1_000_000_000 => scaled(1e6, "M"),
        _ => scaled(1e9, "G"),
    }
}

/// 1, 2 or 5 times a power of ten, at least `max` (and at least 1).
fn nice_ceiling(max: u64) -> u64 {
    let mut base = 1u64;
    loop {
        for step in [1u64, 2, 5] {
            let candidate = base.saturating_mul(step);
            if candidate >= max {
                return candidate.max(1);
            }
        }
        if base > u64::MAX / 10 {
            return u64::MAX;
        }
        base *= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_are_round() {
        assert_eq!(nice_ceiling(0), 1);
        assert_eq!(nice_ceiling(3), 5);
        assert_eq!(nice_ceiling(7), 10);
        assert_eq!(nice_ceiling(108_000), 200_000);
        assert_eq!(compact(950), "950");
        assert_eq!(compact(200_000), "200k");
        assert_eq!(compact(1_500_000), "1.5M");
    }

    #[test]
    fn a_chart_has_a_bar_per_day_and_no_style_attribute() {
        let data: Vec<Bar> = (0..30)
            .map(|i| Bar {
                label: format!("d{i}"),
                value: i,
            })
            .collect();
        let svg = bars("t", "Test", "bar", &data, &|v| v.to_string()).into_string();
        assert_eq!(svg.matches("<rect").count(), 30);
        assert!(!svg.contains("style="));
        assert!(svg.contains("<title id=\"t-title\">Test</title>"));
    }
}
