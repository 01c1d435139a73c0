//! PNG figures of an evaluation: score histograms (Figure 5 of the HamOS paper), ROC curves and
//! a 2-D PCA projection of ID embeddings with the synthesized outliers (Figure 7).
//!
//! Every plot is 900x600 px on white, drawn with `plotters`' bitmap backend and encoded with
//! `png`. Text uses DejaVu Sans embedded in the binary (`hamos/assets`, licence beside it), so
//! plotting needs no system fonts. Scores follow the scorers' convention: higher = more ID.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use hamos_api::{Error, Result};
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

/// Width and height of every plot, in pixels.
const SIZE: (u32, u32) = (900, 600);
/// The family plotters asks for by default, so every text element finds the embedded font.
pub(crate) const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
/// matplotlib's `tab10`, distinguishable and familiar from the paper's figures.
const TAB10: [u32; 10] =
    [0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd, 0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf];
/// `tab10` without blue (ID) and grey (7, the outliers), for the OOD sets.
const OOD_COLOURS: [usize; 8] = [1, 2, 3, 4, 5, 6, 8, 9];

pub(crate) type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;
pub(crate) type Root<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type Plane = Cartesian2d<RangedCoordf64, RangedCoordf64>;
type Chart<'a, 'b> =
    std::result::Result<ChartContext<'a, BitMapBackend<'b>, Plane>, Box<dyn std::error::Error>>;

/// `dir/<model>_<scorer>_scores.png` (histograms of the ID scores against each OOD set and,
/// when given, the synthesized outliers) and `dir/<model>_<scorer>_roc.png`.
pub fn scores_and_roc(
    dir: &Path,
    (model, scorer): (&str, &str),
    id: &[f64],
    ood: &[(String, Vec<f64>)],
    outliers: Option<&[f64]>,
) -> Result<()> {
    let refs: Vec<(&str, &[f64])> = ood.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
    let stem = format!("{model}_{scorer}");
    let title = format!("{model}, {scorer} scores");
    score_histograms(&dir.join(format!("{stem}_scores.png")), &title, id, &refs, outliers)?;
    roc_curves(&dir.join(format!("{stem}_roc.png")), &format!("{title}: ROC"), id, &refs)
}

/// Overlaid density histograms of ID scores, each OOD set's scores and, if given, the
/// synthesized outliers' scores, over bins shared by all finite scores.
///
/// Non-finite scores are skipped and counted in the title (legend counts are of plotted
/// scores). Errors when the ID scores, any named set or the outliers are empty or hold no
/// finite score, or when there is neither an OOD set nor outliers to compare with.
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
    let mut sets = vec![("ID", id, tab10(0))];
    sets.extend(ood.iter().enumerate().map(|(i, (name, s))| (*name, *s, ood_colour(i))));
    sets.extend(outliers.map(|s| ("synthesized outliers", s, tab10(7))));
    let mut skipped = 0;
    let finite = sets
        .iter()
        .map(|(name, s, _)| usable("score histogram", name, s, |v| v.is_finite(), &mut skipped))
        .collect::<Result<Vec<_>>>()?;
    let (mut lo, mut hi) = min_max(finite.iter().flatten().copied());
    if hi - lo < 1e-12 * lo.abs().max(1.0) {
        (lo, hi) = (lo - 0.5, hi + 0.5);
    }
    let total: usize = finite.iter().map(Vec::len).sum();
    // Odd, so that constant scores fall mid-bin.
    let bins = ((total as f64).sqrt() as usize).clamp(20, 60) | 1;
    let width = (hi - lo) / bins as f64;
    if !width.is_finite() {
        return Err(Error::Data(format!("score histogram: scores from {lo} to {hi} span too wide a range")));
    }
    let mut densities = vec![vec![0.0; bins]; finite.len()];
    for (dens, f) in densities.iter_mut().zip(&finite) {
        for v in f {
            // The maximum lands on the upper edge; it belongs to the last bin.
            dens[(((v - lo) / width) as usize).min(bins - 1)] += 1.0 / (f.len() as f64 * width);
        }
    }
    let peak = densities.iter().flatten().fold(0.0f64, |a, &d| a.max(d));
    // Headroom above the bars for the legend, one row per set.
    let top = peak * (1.15 + 0.07 * sets.len() as f64);
    let caption = with_skipped(title, skipped, "non-finite");
    let pad = (hi - lo) * 0.02;
    render(path, |root: &Root| -> DrawResult {
        let mut chart =
            chart(root, &caption, lo - pad..hi + pad, 0.0..top, ["score (higher = more ID)", "density"])?;
        for (((name, _, colour), dens), f) in sets.iter().zip(&densities).zip(&finite) {
            // Outline from the first to the last non-empty bin, so that the last set drawn
            // does not paint the whole baseline.
            let first = dens.iter().position(|&d| d > 0.0).unwrap_or(0);
            let last = dens.iter().rposition(|&d| d > 0.0).unwrap_or(bins - 1);
            let edge = |b: usize| lo + b as f64 * width;
            let mut outline = vec![(edge(first), 0.0)];
            outline.extend((first..=last).flat_map(|b| [(edge(b), dens[b]), (edge(b + 1), dens[b])]));
            outline.push((edge(last + 1), 0.0));
            chart.draw_series(std::iter::once(Polygon::new(outline.clone(), colour.mix(0.25).filled())))?;
            let colour = *colour;
            chart
                .draw_series(LineSeries::new(outline, colour.stroke_width(2)))?
                .label(format!("{name} (n={})", f.len()))
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 18, y + 6)], colour.mix(0.6).filled())
                });
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
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
    let not_nan = |v: &f64| !v.is_nan();
    let mut skipped = 0;
    let id_clean = usable("ROC curves", "ID", id, not_nan, &mut skipped)?;
    let mut curves = Vec::with_capacity(ood.len());
    for (i, (name, s)) in ood.iter().enumerate() {
        let (points, auroc) = roc(&id_clean, &usable("ROC curves", name, s, not_nan, &mut skipped)?);
        curves.push((format!("{name} (AUROC {auroc:.4})"), points, ood_colour(i)));
    }
    let caption = with_skipped(title, skipped, "NaN");
    render(path, |root: &Root| -> DrawResult {
        let desc = ["false positive rate (OOD accepted as ID)", "true positive rate (ID)"];
        let mut chart = chart(root, &caption, -0.01..1.01, -0.01..1.01, desc)?;
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
    let (mut id, mut ood) = (id.to_vec(), ood.to_vec());
    id.sort_by(|a, b| b.total_cmp(a));
    ood.sort_by(|a, b| b.total_cmp(a));
    let (n, m) = (id.len(), ood.len());
    let (mut i, mut j) = (0, 0);
    let mut points = vec![(0.0, 0.0)];
    // Twice the area in count units: integer, hence exact, until the final division.
    let mut area2: u128 = 0;
    while i < n || j < m {
        let t = id.get(i).into_iter().chain(ood.get(j)).fold(f64::NEG_INFINITY, |a, &b| a.max(b));
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
/// The ID rows and the outliers are each subsampled to at most `max_points` (evenly spaced
/// rows, within each class for ID, so that every class keeps its share); the axes are the top
/// two principal axes of the plotted ID rows. Errors on empty groups, `dim` or `max_points` of
/// zero, lengths that are not whole rows, a label count that is not the ID row count, and
/// non-finite values.
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
    let (n_id, n_out) = (id.len() / dim, outliers.len() / dim);
    if id_labels.len() != n_id {
        return err(format!("{} labels for {n_id} ID rows", id_labels.len()));
    }
    // Evenly spaced rows within each class, each class keeping its share of the `max_points`:
    // one stride over all rows can alias with their order and drop whole classes. The picks
    // go back in row order so that no class is always drawn on top.
    let stride =
        |rows: &[usize], quota: usize| (0..quota).map(|k| rows[k * rows.len() / quota]).collect::<Vec<_>>();
    let mut by_class: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    id_labels.iter().enumerate().for_each(|(r, l)| by_class.entry(*l).or_default().push(r));
    let class_picks = |rows: &Vec<usize>| stride(rows, rows.len() * n_id.min(max_points) / n_id);
    let mut id_picks: Vec<usize> = by_class.values().flat_map(class_picks).collect();
    id_picks.sort_unstable();
    let classes: Vec<i64> = by_class.into_keys().collect();
    let gather = |v: &[f32], picks: &[usize]| -> Vec<f64> {
        picks.iter().flat_map(|r| &v[r * dim..(r + 1) * dim]).map(|&x| f64::from(x)).collect()
    };
    let id_rows = gather(id, &id_picks);
    let out_rows = gather(outliers, &stride(&(0..n_out).collect::<Vec<_>>(), n_out.min(max_points)));
    let labels: Vec<i64> = id_picks.iter().map(|&r| id_labels[r]).collect();
    let axes = principal_axes(&id_rows, dim, 2);
    let mean = column_mean(&id_rows, dim);
    let centred = |r: &[f64]| r.iter().zip(&mean).map(|(x, m)| x - m).collect::<Vec<_>>();
    let project = |rows: &[f64]| -> Vec<(f64, f64)> {
        let coord = |c: &[f64], i: usize| axes.get(i).map_or(0.0, |a| dot(c, a));
        rows.chunks_exact(dim).map(&centred).map(|c| (coord(&c, 0), coord(&c, 1))).collect()
    };
    let (id_pts, out_pts) = (project(&id_rows), project(&out_rows));
    // Share of the ID variance along each axis, for the axis titles.
    let total: f64 = id_rows.chunks_exact(dim).map(|r| centred(r).iter().map(|x| x * x).sum::<f64>()).sum();
    let share = |f: fn(&(f64, f64)) -> f64| 100.0 * id_pts.iter().map(|p| f(p).powi(2)).sum::<f64>() / total;
    let (var1, var2) = if total > 0.0 { (share(|p| p.0), share(|p| p.1)) } else { (0.0, 0.0) };
    let colour = |l: &i64| tab10(classes.binary_search(l).unwrap_or(0));
    let range = |f: fn(&(f64, f64)) -> f64| {
        let (lo, hi) = min_max(id_pts.iter().chain(&out_pts).map(f));
        let pad = ((hi - lo) * 0.04).max(1e-6);
        lo - pad..hi + pad
    };
    let (xr, yr) = (range(|p| p.0), range(|p| p.1));
    let mut entries: Vec<(String, RGBColor)> = match classes.len() <= TAB10.len() {
        true => classes.iter().enumerate().map(|(k, c)| (format!("class {c}"), tab10(k))).collect(),
        false => vec![(format!("ID: {} classes", classes.len()), tab10(0))],
    };
    entries.push(("synthesized outliers".into(), BLACK));
    render(path, |root: &Root| -> DrawResult {
        // The legend gets its own column: inside the plot it would hide points.
        let (plot, side) = root.margin(8, 0, 0, 0).titled(title, (FONT, 24))?.split_horizontally(665);
        let desc = [&format!("PC 1 ({var1:.1}% of ID variance)") as &str, &format!("PC 2 ({var2:.1}%)")];
        let mut chart = chart(&plot, "", xr, yr, desc)?;
        chart.draw_series(
            id_pts.iter().zip(&labels).map(|(&p, l)| Circle::new(p, 3, colour(l).mix(0.75).filled())),
        )?;
        chart.draw_series(out_pts.iter().map(|&p| Cross::new(p, 3, BLACK.stroke_width(2))))?;
        for (k, (label, col)) in entries.iter().enumerate() {
            let y = 30 + 26 * k as i32;
            match k + 1 == entries.len() {
                true => side.draw(&Cross::new((16, y), 5, col.stroke_width(2)))?,
                false => side.draw(&Circle::new((16, y), 6, col.filled()))?,
            }
            side.draw(&Text::new(label.as_str(), (30, y - 8), (FONT, 16)))?;
        }
        Ok(())
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
    let mean = column_mean(rows, dim);
    let mut cov = vec![0.0; dim * dim];
    for r in rows.chunks_exact(dim) {
        let c: Vec<f64> = r.iter().zip(&mean).map(|(x, m)| x - m).collect();
        for (row, ca) in cov.chunks_exact_mut(dim).zip(&c) {
            row.iter_mut().zip(&c).for_each(|(v, cb)| *v += ca * cb);
        }
    }
    let times = |cov: &[f64], v: &[f64]| cov.chunks_exact(dim).map(|row| dot(row, v)).collect::<Vec<_>>();
    // Below this, what is left of the covariance is rounding noise.
    let tiny = 1e-12 * (0..dim).map(|i| cov[i * dim + i]).sum::<f64>();
    let mut axes: Vec<Vec<f64>> = Vec::new();
    for _ in 0..k.min(dim) {
        // Start on the coordinate with the most variance left, tilted so that it is not
        // exactly orthogonal to the axis sought; plain coordinates serve degenerate data.
        let start = (0..dim).max_by(|&a, &b| cov[a * dim + a].total_cmp(&cov[b * dim + b])).unwrap_or(0);
        let basis =
            |j: usize, off: f64| (0..dim).map(move |i| if i == j { 1.0 } else { off }).collect::<Vec<_>>();
        let mut v = std::iter::once(basis(start, 1e-3))
            .chain((0..dim).map(|j| basis(j, 0.0)))
            .find_map(|mut c| orthonormalise(&mut c, &axes, 1e-6).then_some(c))
            .unwrap_or_else(|| vec![0.0; dim]);
        for _ in 0..1000 {
            let mut w = times(&cov, &v);
            if !orthonormalise(&mut w, &axes, tiny) {
                break;
            }
            let moved = w.iter().zip(&v).map(|(a, b)| (a - b) * (a - b)).sum::<f64>();
            v = w;
            if moved < 1e-24 {
                break;
            }
        }
        if v.iter().fold(0.0f64, |a, &x| if x.abs() > a.abs() { x } else { a }) < 0.0 {
            v.iter_mut().for_each(|x| *x = -*x);
        }
        let lambda = dot(&times(&cov, &v), &v);
        for (row, va) in cov.chunks_exact_mut(dim).zip(&v) {
            row.iter_mut().zip(&v).for_each(|(x, vb)| *x -= lambda * va * vb);
        }
        axes.push(v);
    }
    axes
}

/// Removes from `v` its components along the orthonormal `axes` and normalises it; false when
/// its norm is then not above `min_norm`.
fn orthonormalise(v: &mut [f64], axes: &[Vec<f64>], min_norm: f64) -> bool {
    for a in axes {
        let d = dot(v, a);
        v.iter_mut().zip(a).for_each(|(x, y)| *x -= d * y);
    }
    let norm = dot(v, v).sqrt();
    if norm.is_nan() || norm <= min_norm {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    true
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn column_mean(rows: &[f64], dim: usize) -> Vec<f64> {
    let n = (rows.len() / dim).max(1) as f64;
    let mut mean = vec![0.0; dim];
    for r in rows.chunks_exact(dim) {
        mean.iter_mut().zip(r).for_each(|(m, x)| *m += x / n);
    }
    mean
}

/// The scores of `s` that pass `keep`, adding the others to `skipped`; an error naming the
/// plot and set when none pass.
fn usable(
    plot: &str,
    name: &str,
    s: &[f64],
    keep: fn(&f64) -> bool,
    skipped: &mut usize,
) -> Result<Vec<f64>> {
    let kept: Vec<f64> = s.iter().copied().filter(keep).collect();
    *skipped += s.len() - kept.len();
    match kept.is_empty() {
        true => Err(Error::Data(format!("{plot}: `{name}` has no usable score ({} given)", s.len()))),
        false => Ok(kept),
    }
}

fn with_skipped(title: &str, skipped: usize, what: &str) -> String {
    match skipped {
        0 => title.to_string(),
        n => format!("{title} ({n} {what} score(s) skipped)"),
    }
}

fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

pub(crate) fn tab10(i: usize) -> RGBColor {
    let c = TAB10[i % TAB10.len()];
    RGBColor((c >> 16) as u8, (c >> 8) as u8, c as u8)
}

fn ood_colour(i: usize) -> RGBColor {
    tab10(OOD_COLOURS[i % OOD_COLOURS.len()])
}

/// Registers the embedded font once per process.
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    match REGISTERED.get_or_init(|| register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok()) {
        true => Ok(()),
        false => Err(Error::Data("plots: the embedded font does not parse".into())),
    }
}

/// A chart on `area` with the common look: caption, light grid, axis titles, readable fonts.
fn chart<'a, 'b>(
    area: &'a Root<'b>,
    caption: &str,
    x: Range<f64>,
    y: Range<f64>,
    desc: [&str; 2],
) -> Chart<'a, 'b> {
    let mut builder = ChartBuilder::on(area);
    builder.margin(18).x_label_area_size(56).y_label_area_size(76);
    if !caption.is_empty() {
        builder.caption(caption, (FONT, 24));
    }
    let mut chart = builder.build_cartesian_2d(x, y)?;
    // A tick at zero can come out as -1e-17, which would print as "-0.0".
    let tick = |v: &f64| {
        let s = RangedCoordf64::format(v);
        if s.bytes().all(|c| b"-0.".contains(&c)) {
            s.replace('-', "")
        } else {
            s
        }
    };
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(225, 225, 225))
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 18))
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .x_desc(desc[0])
        .y_desc(desc[1])
        .draw()?;
    Ok(chart)
}

pub(crate) fn draw_legend<'a, 'b: 'a>(
    chart: &mut ChartContext<'a, BitMapBackend<'b>, Plane>,
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
pub(crate) fn render(path: &Path, draw: impl FnOnce(&Root) -> DrawResult) -> Result<()> {
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
        let mut w = enc.write_header().map_err(|e| failed(&e))?;
        w.write_image_data(&pixels).map_err(|e| failed(&e))?;
        w.finish().map_err(|e| failed(&e))?;
    }
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { op, path, source }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io("creating the plot directory", dir))?;
    }
    std::fs::write(path, encoded).map_err(io("writing a plot", path))
}
