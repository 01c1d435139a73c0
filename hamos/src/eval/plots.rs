//! PNG figures of an evaluation: score histograms (Figure 5 of the HamOS paper), ROC curves and
//! a 2-D PCA projection of ID embeddings with the synthesized outliers (Figure 7).
//!
//! Every plot is 900x600 px on white, drawn with `plotters`' bitmap backend and encoded with
//! `png`. Text uses DejaVu Sans embedded in the binary (`hamos/assets`, licence beside it), so
//! plotting needs no system fonts. Scores follow the scorers' convention: higher = more ID.

use std::path::Path;
use std::sync::OnceLock;

use hamos_api::{Error, Result};
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

/// Width and height of every plot, in pixels.
const SIZE: (u32, u32) = (900, 600);
/// The family plotters asks for by default, so every text element finds the embedded font.
const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
/// matplotlib's `tab10`, distinguishable and familiar from the paper's figures.
const TAB10: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
/// `tab10` without blue (ID) and grey (outliers), for the OOD sets.
const OOD_COLOURS: [usize; 8] = [1, 2, 3, 4, 5, 6, 8, 9];
const OUTLIER_GREY: RGBColor = TAB10[7];

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;
type Root<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Overlaid density histograms of ID scores, each OOD set's scores and, if given, the
/// synthesized outliers' scores, over bins shared by all finite scores.
///
/// Non-finite scores are skipped and counted in the title. Errors when the ID scores, any
/// named set or the outliers are empty or hold no finite score, or when there is neither an
/// OOD set nor outliers to compare with.
pub fn score_histograms(
    path: &Path,
    title: &str,
    id: &[f64],
    ood: &[(&str, &[f64])],
    outliers: Option<&[f64]>,
) -> Result<()> {
    if ood.is_empty() && outliers.is_none() {
        return Err(Error::Data("score histogram: no OOD set and no outliers to compare with".into()));
    }
    let mut sets = vec![(format!("ID (n={})", id.len()), id, TAB10[0])];
    for (i, (name, s)) in ood.iter().enumerate() {
        sets.push((format!("{name} (n={})", s.len()), *s, TAB10[OOD_COLOURS[i % OOD_COLOURS.len()]]));
    }
    if let Some(s) = outliers {
        sets.push((format!("synthesized outliers (n={})", s.len()), s, OUTLIER_GREY));
    }
    let mut skipped = 0;
    let mut finite = Vec::with_capacity(sets.len());
    for (label, s, _) in &sets {
        let f: Vec<f64> = s.iter().copied().filter(|v| v.is_finite()).collect();
        if f.is_empty() {
            return Err(Error::Data(format!("score histogram: `{label}` has no finite score")));
        }
        skipped += s.len() - f.len();
        finite.push(f);
    }
    let (mut lo, mut hi) = finite.iter().flatten().fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    if hi - lo < 1e-12 * lo.abs().max(1.0) {
        (lo, hi) = (lo - 0.5, hi + 0.5);
    }
    let total: usize = finite.iter().map(Vec::len).sum();
    let bins = ((total as f64).sqrt() as usize).clamp(20, 60);
    let width = (hi - lo) / bins as f64;
    let densities: Vec<Vec<f64>> = finite
        .iter()
        .map(|f| {
            let mut counts = vec![0.0; bins];
            for v in f {
                // The maximum lands on the upper edge; it belongs to the last bin.
                counts[(((v - lo) / width) as usize).min(bins - 1)] += 1.0;
            }
            counts.iter().map(|c| c / (f.len() as f64 * width)).collect()
        })
        .collect();
    let peak = densities.iter().flatten().fold(0.0f64, |a, &d| a.max(d));
    // Legend on the side whose tallest bar is lower, with headroom above the bars for it.
    let side = |r: std::ops::Range<usize>| densities.iter().flat_map(|d| &d[r.clone()]).fold(0.0f64, |a, &b| a.max(b));
    let (left, right) = (side(0..bins * 2 / 5), side(bins - bins * 2 / 5..bins));
    let corner = if left <= right { SeriesLabelPosition::UpperLeft } else { SeriesLabelPosition::UpperRight };
    let caption = match skipped {
        0 => title.to_string(),
        n => format!("{title} ({n} non-finite score(s) skipped)"),
    };
    let pad = (hi - lo) * 0.02;
    render(path, |root: &Root| -> DrawResult {
        let mut chart = chart_builder(root, &caption).build_cartesian_2d(lo - pad..hi + pad, 0.0..peak * 1.4)?;
        style_mesh(&mut chart, "score (higher = more ID)", "density")?;
        for ((label, _, colour), dens) in sets.iter().zip(&densities) {
            let mut outline = vec![(lo, 0.0)];
            for (b, &d) in dens.iter().enumerate() {
                let x0 = lo + b as f64 * width;
                outline.extend([(x0, d), (x0 + width, d)]);
            }
            outline.push((hi, 0.0));
            chart.draw_series(std::iter::once(Polygon::new(outline.clone(), colour.mix(0.25).filled())))?;
            let colour = *colour;
            chart
                .draw_series(LineSeries::new(outline, colour.stroke_width(2)))?
                .label(label.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 18, y + 6)], colour.mix(0.6).filled()));
        }
        draw_legend(&mut chart, corner)
    })
}

/// ROC curves of ID (positive, higher score = ID) against each OOD set, with the chance
/// diagonal and each set's exact AUROC in the legend.
///
/// NaN scores are skipped and counted in the title; infinite scores are ordered as usual.
/// Errors when the ID scores, the list of OOD sets or any set is empty or all NaN.
pub fn roc_curves(path: &Path, title: &str, id: &[f64], ood: &[(&str, &[f64])]) -> Result<()> {
    if ood.is_empty() {
        return Err(Error::Data("ROC curves: no OOD set given".into()));
    }
    let clean = |what: &str, s: &[f64]| -> Result<Vec<f64>> {
        let c: Vec<f64> = s.iter().copied().filter(|v| !v.is_nan()).collect();
        if c.is_empty() {
            return Err(Error::Data(format!("ROC curves: `{what}` has no score that is not NaN")));
        }
        Ok(c)
    };
    let id_clean = clean("ID", id)?;
    let mut skipped = id.len() - id_clean.len();
    let mut curves = Vec::with_capacity(ood.len());
    for (i, (name, s)) in ood.iter().enumerate() {
        let c = clean(name, s)?;
        skipped += s.len() - c.len();
        let (points, auroc) = roc(&id_clean, &c);
        curves.push((format!("{name} (AUROC {auroc:.4})"), points, TAB10[OOD_COLOURS[i % OOD_COLOURS.len()]]));
    }
    let caption = match skipped {
        0 => title.to_string(),
        n => format!("{title} ({n} NaN score(s) skipped)"),
    };
    render(path, |root: &Root| -> DrawResult {
        let mut chart = chart_builder(root, &caption).build_cartesian_2d(-0.01..1.01, -0.01..1.01)?;
        style_mesh(&mut chart, "false positive rate (OOD accepted as ID)", "true positive rate (ID)")?;
        let grey = BLACK.mix(0.45);
        chart
            .draw_series(DashedLineSeries::new([(0.0, 0.0), (1.0, 1.0)], 8, 6, grey.stroke_width(1)))?
            .label("chance (AUROC 0.5)")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], grey));
        for (label, points, colour) in curves {
            chart
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(3)));
        }
        draw_legend(&mut chart, SeriesLabelPosition::LowerRight)
    })
}

/// The ROC points `(FPR, TPR)` from `(0, 0)` to `(1, 1)`, one per distinct score, and the
/// exact AUROC (ties count 1/2) for ID positive, higher = ID. Inputs must be non-empty and
/// free of NaN (the callers filter them).
pub fn roc(id: &[f64], ood: &[f64]) -> (Vec<(f64, f64)>, f64) {
    let desc = |s: &[f64]| {
        let mut v = s.to_vec();
        v.sort_by(|a, b| b.total_cmp(a));
        v
    };
    let (id, ood) = (desc(id), desc(ood));
    let (n, m) = (id.len(), ood.len());
    let (mut i, mut j) = (0, 0);
    let mut points = vec![(0.0, 0.0)];
    // Twice the area in count units: integer, hence exact, until the final division.
    let mut area2: u128 = 0;
    while i < n || j < m {
        let t = match (id.get(i), ood.get(j)) {
            (Some(&a), Some(&b)) => a.max(b),
            (Some(&a), None) => a,
            (None, Some(&b)) => b,
            (None, None) => break,
        };
        let (i0, j0) = (i, j);
        // `==` (not total_cmp) so that -0.0 and 0.0 form one threshold.
        while i < n && id[i] == t {
            i += 1;
        }
        while j < m && ood[j] == t {
            j += 1;
        }
        area2 += ((j - j0) * (i + i0)) as u128;
        points.push((j as f64 / m as f64, i as f64 / n as f64));
    }
    (points, area2 as f64 / (2.0 * n as f64 * m as f64))
}

/// A 2-D PCA projection of ID embeddings (rows of `dim` values, coloured by `id_labels`,
/// `tab10` cycling past 10 classes) with the synthesized outliers as black crosses on top.
///
/// Each group (ID, outliers) is subsampled with a fixed stride to at most `max_points` rows;
/// the axes are the top two principal axes of the plotted ID rows. Errors on empty groups,
/// `dim` or `max_points` of zero, lengths that are not whole rows, a label count that is not
/// the ID row count, and non-finite values.
pub fn embedding_projection(
    path: &Path,
    title: &str,
    id: &[f32],
    id_labels: &[i64],
    dim: usize,
    outliers: &[f32],
    max_points: usize,
) -> Result<()> {
    let err = |msg: String| Err(Error::Data(format!("embedding projection: {msg}")));
    if dim == 0 || max_points == 0 {
        return err(format!("dim ({dim}) and max_points ({max_points}) must be positive"));
    }
    for (what, v) in [("ID embeddings", id), ("outliers", outliers)] {
        if v.is_empty() || v.len() % dim != 0 {
            return err(format!("{what} hold {} values, not a positive multiple of dim {dim}", v.len()));
        }
        if v.iter().any(|x| !x.is_finite()) {
            return err(format!("{what} contain non-finite values"));
        }
    }
    if id_labels.len() != id.len() / dim {
        return err(format!("{} labels for {} ID rows", id_labels.len(), id.len() / dim));
    }
    let stride = |rows: usize| rows.div_ceil(max_points);
    let pick = |v: &[f32], step: usize| -> Vec<f64> {
        v.chunks_exact(dim).step_by(step).flatten().map(|&x| f64::from(x)).collect()
    };
    let id_step = stride(id_labels.len());
    let id_rows = pick(id, id_step);
    let labels: Vec<i64> = id_labels.iter().copied().step_by(id_step).collect();
    let out_rows = pick(outliers, stride(outliers.len() / dim));
    let axes = principal_axes(&id_rows, dim, 2);
    let n = labels.len() as f64;
    let mean: Vec<f64> =
        (0..dim).map(|c| id_rows.iter().skip(c).step_by(dim).sum::<f64>() / n).collect();
    let project = |rows: &[f64]| -> Vec<(f64, f64)> {
        let dot = |r: &[f64], a: &[f64]| r.iter().zip(&mean).zip(a).map(|((x, m), a)| (x - m) * a).sum::<f64>();
        rows.chunks_exact(dim).map(|r| (dot(r, &axes[0]), axes.get(1).map_or(0.0, |a| dot(r, a)))).collect()
    };
    let (id_pts, out_pts) = (project(&id_rows), project(&out_rows));
    // Share of the ID variance each axis explains, for the axis titles.
    let total_var: f64 =
        id_rows.chunks_exact(dim).flat_map(|r| r.iter().zip(&mean).map(|(x, m)| (x - m) * (x - m))).sum();
    let share = |f: fn(&(f64, f64)) -> f64| 100.0 * id_pts.iter().map(|p| f(p).powi(2)).sum::<f64>() / total_var;
    let (var1, var2) = if total_var > 0.0 { (share(|p| p.0), share(|p| p.1)) } else { (0.0, 0.0) };
    let mut classes = labels.clone();
    classes.sort_unstable();
    classes.dedup();
    let colour = |l: &i64| TAB10[classes.binary_search(l).unwrap_or(0) % TAB10.len()];
    let range = |f: fn(&(f64, f64)) -> f64| {
        let (lo, hi) = id_pts.iter().chain(&out_pts).map(f).fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
        let pad = ((hi - lo) * 0.05).max(1e-6);
        lo - pad..hi + pad * 6.0
    };
    let (xr, yr) = (range(|p| p.0), range(|p| p.1));
    render(path, |root: &Root| -> DrawResult {
        let mut chart = chart_builder(root, title).build_cartesian_2d(xr, yr)?;
        style_mesh(&mut chart, &format!("PC 1 ({var1:.1}% of ID variance)"), &format!("PC 2 ({var2:.1}%)"))?;
        chart.draw_series(id_pts.iter().zip(&labels).map(|(&p, l)| Circle::new(p, 3, colour(l).mix(0.75).filled())))?;
        if classes.len() <= TAB10.len() {
            for (k, c) in classes.iter().enumerate() {
                let col = TAB10[k];
                chart
                    .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
                    .label(format!("class {c}"))
                    .legend(move |(x, y)| Circle::new((x + 9, y), 5, col.filled()));
            }
        } else {
            chart
                .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
                .label(format!("ID: {} classes, 10 colours cycling", classes.len()))
                .legend(|(x, y)| Circle::new((x + 9, y), 5, TAB10[0].filled()));
        }
        chart
            .draw_series(out_pts.iter().map(|&p| Cross::new(p, 4, BLACK.stroke_width(2))))?
            .label(format!("synthesized outliers (n={})", out_pts.len()))
            .legend(|(x, y)| Cross::new((x + 9, y), 5, BLACK.stroke_width(2)));
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

/// The top `k` principal axes (unit vectors, by decreasing variance) of `rows`, a row-major
/// matrix with `dim` columns (a trailing partial row is ignored).
///
/// Power iteration on the covariance matrix with deflation, in `f64`. Returns `min(k, dim)`
/// axes, each with its largest-magnitude component positive (a deterministic sign); where the
/// data have no variance left the axes are still orthonormal but otherwise arbitrary.
pub fn principal_axes(rows: &[f64], dim: usize, k: usize) -> Vec<Vec<f64>> {
    if dim == 0 {
        return Vec::new();
    }
    let n = (rows.len() / dim).max(1) as f64;
    let mut mean = vec![0.0; dim];
    for r in rows.chunks_exact(dim) {
        mean.iter_mut().zip(r).for_each(|(m, x)| *m += x / n);
    }
    let mut cov = vec![0.0; dim * dim];
    let mut c = vec![0.0; dim];
    for r in rows.chunks_exact(dim) {
        c.iter_mut().zip(r.iter().zip(&mean)).for_each(|(c, (x, m))| *c = x - m);
        // Upper triangle only; mirrored below.
        for a in 0..dim {
            let row = &mut cov[a * dim..(a + 1) * dim];
            row[a..].iter_mut().zip(&c[a..]).for_each(|(v, cb)| *v += c[a] * cb / n);
        }
    }
    for a in 0..dim {
        for b in 0..a {
            cov[a * dim + b] = cov[b * dim + a];
        }
    }
    let scale = (0..dim).map(|i| cov[i * dim + i]).sum::<f64>();
    let mut axes: Vec<Vec<f64>> = Vec::new();
    for _ in 0..k.min(dim) {
        let diag = |i: usize| cov[i * dim + i];
        // Start on the coordinate with the most variance left, tilted so that it is not
        // exactly orthogonal to the axis sought.
        let start = (0..dim).max_by(|&a, &b| diag(a).total_cmp(&diag(b))).unwrap_or(0);
        let mut v: Vec<f64> = (0..dim).map(|i| if i == start { 1.0 } else { 1e-3 }).collect();
        if !orthonormalise(&mut v, &axes) {
            v = fallback_axis(&axes, dim);
        }
        for _ in 0..1000 {
            let mut w: Vec<f64> = cov.chunks_exact(dim).map(|row| row.iter().zip(&v).map(|(a, b)| a * b).sum()).collect();
            let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            // No variance left: any unit vector orthogonal to the found axes will do.
            if norm <= 1e-14 * scale.max(f64::MIN_POSITIVE) || !orthonormalise(&mut w, &axes) {
                break;
            }
            let diff = w.iter().zip(&v).map(|(a, b)| (a - b) * (a - b)).sum::<f64>();
            v = w;
            if diff < 1e-24 {
                break;
            }
        }
        let big = v.iter().copied().fold(0.0f64, |a, x| if x.abs() > a.abs() { x } else { a });
        if big < 0.0 {
            v.iter_mut().for_each(|x| *x = -*x);
        }
        let cv: Vec<f64> = cov.chunks_exact(dim).map(|row| row.iter().zip(&v).map(|(a, b)| a * b).sum()).collect();
        let lambda: f64 = cv.iter().zip(&v).map(|(a, b)| a * b).sum();
        for a in 0..dim {
            for b in 0..dim {
                cov[a * dim + b] -= lambda * v[a] * v[b];
            }
        }
        axes.push(v);
    }
    axes
}

/// Removes from `v` its components along the (orthonormal) `axes` and normalises it; false
/// when nothing is left.
fn orthonormalise(v: &mut [f64], axes: &[Vec<f64>]) -> bool {
    for a in axes {
        let d: f64 = v.iter().zip(a).map(|(x, y)| x * y).sum();
        v.iter_mut().zip(a).for_each(|(x, y)| *x -= d * y);
    }
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if !(norm > 1e-9) {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    true
}

/// The first coordinate vector not spanned by `axes`, orthonormalised against them.
fn fallback_axis(axes: &[Vec<f64>], dim: usize) -> Vec<f64> {
    for i in 0..dim {
        let mut e = vec![0.0; dim];
        e[i] = 1.0;
        if orthonormalise(&mut e, axes) {
            return e;
        }
    }
    vec![0.0; dim]
}

/// Registers the embedded font once per process.
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| register_font(FONT, FontStyle::Normal, FONT_BYTES).map_err(|_| "invalid embedded font".into()))
        .clone()
        .map_err(Error::Data)
}

fn chart_builder<'a, 'b>(root: &'a Root<'b>, caption: &str) -> ChartBuilder<'a, 'static, BitMapBackend<'b>> {
    let mut b = ChartBuilder::on(root);
    b.caption(caption, (FONT, 24)).margin(18).x_label_area_size(56).y_label_area_size(76);
    b
}

fn style_mesh<X, Y>(chart: &mut ChartContext<'_, BitMapBackend<'_>, Cartesian2d<X, Y>>, x: &str, y: &str) -> DrawResult
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(225, 225, 225))
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 18))
        .x_desc(x)
        .y_desc(y)
        .draw()?;
    Ok(())
}

fn draw_legend<'a, 'b: 'a, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'a, BitMapBackend<'b>, Cartesian2d<X, Y>>,
    at: SeriesLabelPosition,
) -> DrawResult {
    chart
        .configure_series_labels()
        .position(at)
        .margin(12)
        .label_font((FONT, 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    Ok(())
}

/// Draws onto a white 900x600 canvas and writes it as PNG to `path`, creating its directory.
fn render(path: &Path, draw: impl FnOnce(&Root) -> DrawResult) -> Result<()> {
    ensure_font()?;
    let failed = |e: &dyn std::fmt::Display| Error::Data(format!("drawing {}: {e}", path.display()));
    let mut pixels = vec![0u8; SIZE.0 as usize * SIZE.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| failed(&e))?;
        draw(&root).map_err(|e| failed(&e))?;
        root.present().map_err(|e| failed(&e))?;
    }
    let mut encoded = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut encoded, SIZE.0, SIZE.1);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(|e| failed(&e))?;
        w.write_image_data(&pixels).map_err(|e| failed(&e))?;
        w.finish().map_err(|e| failed(&e))?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            op: "creating the plot directory",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, encoded).map_err(|source| Error::Io { op: "writing a plot", path: path.to_path_buf(), source })
}
