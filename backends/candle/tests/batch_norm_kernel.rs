//! The fused CPU training batch norm of the candle backend against an f64 reference written with
//! plain loops (its gradients themselves checked by finite differences) and against the
//! composition of core ops it replaces: output, batch statistics and the gradients with respect
//! to input, weight and bias, on seeded random inputs.

use hamos_api::{Backend, BatchNormOutput, Result, Tensor};
use hamos_candle::CandleBackend;

/// Relative tolerance, against the largest magnitude of each reference tensor.
const RTOL: f64 = 1e-4;
const EPS: f64 = 1e-5;

/// A small seeded generator (SplitMix64), so the tests need no random-number crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `len` values uniform in `[offset - 1, offset + 1)`, rounded to f32.
    fn values(&mut self, len: usize, offset: f64) -> Vec<f32> {
        (0..len).map(|_| (offset + 2.0 * self.next() - 1.0) as f32).collect()
    }
}

/// Input dims `[n, c, h, w]`.
type Dims = [usize; 4];

/// The f64 forward: output, mean and biased variance per channel.
fn forward(d: Dims, x: &[f64], w: &[f64], b: &[f64]) -> [Vec<f64>; 3] {
    let [n, c, h, wd] = d;
    let (hw, m) = (h * wd, (n * h * wd) as f64);
    let index = |s: usize, ch: usize, i: usize| (s * c + ch) * hw + i;
    let (mut mean, mut var, mut out) = (vec![0.0; c], vec![0.0; c], vec![0.0; x.len()]);
    for ch in 0..c {
        for s in 0..n {
            for i in 0..hw {
                mean[ch] += x[index(s, ch, i)] / m;
            }
        }
        for s in 0..n {
            for i in 0..hw {
                var[ch] += (x[index(s, ch, i)] - mean[ch]).powi(2) / m;
            }
        }
        let invstd = 1.0 / (var[ch] + EPS).sqrt();
        for s in 0..n {
            for i in 0..hw {
                let k = index(s, ch, i);
                out[k] = (x[k] - mean[ch]) * invstd * w[ch] + b[ch];
            }
        }
    }
    [out, mean, var]
}

/// The analytic gradients `(dx, dw, db)` of `sum(out * g)`.
fn gradients(d: Dims, x: &[f64], w: &[f64], g: &[f64]) -> [Vec<f64>; 3] {
    let [n, c, h, wd] = d;
    let (hw, m) = (h * wd, (n * h * wd) as f64);
    let [_, mean, var] = forward(d, x, w, &vec![0.0; c]);
    let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
    for ch in 0..c {
        let invstd = 1.0 / (var[ch] + EPS).sqrt();
        let ks = || (0..n).flat_map(move |s| (0..hw).map(move |i| (s * c + ch) * hw + i));
        for k in ks() {
            db[ch] += g[k];
            dw[ch] += g[k] * (x[k] - mean[ch]) * invstd;
        }
        for k in ks() {
            let xhat = (x[k] - mean[ch]) * invstd;
            dx[k] = w[ch] * invstd / m * (m * g[k] - db[ch] - xhat * dw[ch]);
        }
    }
    [dx, dw, db]
}

fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&v| f64::from(v)).collect()
}

/// Checks `got` against `want` within `rtol` of the largest magnitude in `want`.
fn check(what: &str, got: &[f32], want: &[f64], rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1e-3f64, |a, v| a.max(v.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (f64::from(g) - w).abs();
        assert!(err <= rtol * scale, "{what}[{i}]: got {g}, want {w} (scale {scale})");
    }
}

/// The composition of core ops that `Tensor::batch_norm_train` runs without a fused kernel.
fn composed(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<BatchNormOutput> {
    let d = x.dims().to_vec();
    let count = (d[0] * d[2] * d[3]) as f64;
    let channel_sum = |t: &Tensor| -> Result<Tensor> { t.sum(0, true)?.sum(2, true)?.sum(3, true) };
    let per_channel = [1, d[1], 1, 1];
    let mean = channel_sum(x)?.scale(1.0 / count)?;
    let centered = x.sub(&mean)?;
    let variance = channel_sum(&centered.sqr()?)?.scale(1.0 / count)?;
    let normalized = centered.div(&variance.add_scalar(EPS)?.sqrt()?)?;
    let output = normalized.mul(&weight.reshape(&per_channel)?)?.add(&bias.reshape(&per_channel)?)?;
    Ok(BatchNormOutput { output, mean: mean.reshape(&[d[1]])?, variance: variance.reshape(&[d[1]])? })
}

/// Output, mean, variance, dx, dw, db (as host vectors) of one run on `x` (`[n, c, h, w]`, or
/// `[n, c, w, h]` transposed when `transposed`) through the fused op or the composition.
fn run(
    backend: &CandleBackend,
    d: Dims,
    data: [&[f32]; 4],
    transposed: bool,
    fused: bool,
) -> Result<[Vec<f32>; 6]> {
    let [x, w, b, g] = data;
    let [n, c, h, wd] = d;
    let vx = if transposed {
        backend.variable(&backend.from_f32(x, &[n, c, wd, h])?)?
    } else {
        backend.variable(&backend.from_f32(x, &d)?)?
    };
    let input = if transposed { vx.transpose(2, 3)? } else { vx.clone() };
    let (vw, vb) =
        (backend.variable(&backend.from_f32(w, &[c])?)?, backend.variable(&backend.from_f32(b, &[c])?)?);
    let bn = if fused { input.batch_norm_train(&vw, &vb, EPS)? } else { composed(&input, &vw, &vb)? };
    assert_eq!(bn.output.dims(), d);
    assert_eq!((bn.mean.dims(), bn.variance.dims()), (vec![c], vec![c]));
    let loss = bn.output.mul(&backend.from_f32(g, &d)?)?.sum_all()?;
    let grads = loss.gradients(&[&vx, &vw, &vb])?;
    let dx = if transposed { grads[0].transpose(2, 3)? } else { grads[0].clone() };
    Ok([
        bn.output.to_vec_f32()?,
        bn.mean.to_vec_f32()?,
        bn.variance.to_vec_f32()?,
        dx.to_vec_f32()?,
        grads[1].to_vec_f32()?,
        grads[2].to_vec_f32()?,
    ])
}

/// The values of `x` `[n, c, h, w]` laid out as `[n, c, w, h]`.
fn transpose_hw(d: Dims, x: &[f32]) -> Vec<f32> {
    let [n, c, h, w] = d;
    let mut out = vec![0.0; x.len()];
    for p in 0..n * c {
        for i in 0..h {
            for j in 0..w {
                out[(p * w + j) * h + i] = x[(p * h + i) * w + j];
            }
        }
    }
    out
}

const NAMES: [&str; 6] = ["output", "mean", "variance", "dx", "dweight", "dbias"];

fn case(backend: &CandleBackend, rng: &mut Rng, d: Dims, offset: f64, transposed: bool) -> Result<()> {
    let [n, c, h, w] = d;
    let len = n * c * h * w;
    let x = rng.values(len, offset);
    let (wt, b, g) = (rng.values(c, 0.5), rng.values(c, 0.0), rng.values(len, 0.0));
    let (x64, w64, b64, g64) = (to_f64(&x), to_f64(&wt), to_f64(&b), to_f64(&g));
    let [out, mean, var] = forward(d, &x64, &w64, &b64);
    let [dx, dw, db] = gradients(d, &x64, &w64, &g64);
    let want = [out, mean, var, dx, dw, db];
    let host_x = if transposed { transpose_hw(d, &x) } else { x };
    let data = [host_x.as_slice(), &wt, &b, &g];
    let fused = run(backend, d, data, transposed, true)?;
    let plain = run(backend, d, data, transposed, false)?;
    for (i, name) in NAMES.iter().enumerate() {
        let what = format!("{d:?} offset {offset} transposed {transposed} {name}");
        check(&format!("fused {what}"), &fused[i], &want[i], RTOL);
        // The composition works in f32 throughout: a large mean costs it digits.
        check(&format!("composed {what}"), &plain[i], &want[i], RTOL * (1.0 + offset));
    }
    assert_eq!(run(backend, d, data, transposed, true)?, fused, "{d:?}: a rerun must be bit-identical");
    Ok(())
}

#[test]
fn fused_batch_norm_matches_the_reference_and_the_composition() -> Result<()> {
    let backend = CandleBackend::cpu();
    let mut rng = Rng(17);
    // n = 1 with h w > 1, c = 1, planes of one value, the minimum of two values per channel,
    // planes not a multiple of the accumulation lanes, and enough planes for several tasks.
    let shapes =
        [[2, 3, 4, 5], [1, 4, 3, 3], [5, 1, 2, 3], [3, 2, 1, 1], [1, 1, 1, 2], [16, 8, 7, 9], [4, 3, 17, 13]];
    for d in shapes {
        case(&backend, &mut rng, d, 0.0, false)?;
    }
    // A mean large against the spread: the variance must not cancel.
    case(&backend, &mut rng, [3, 2, 5, 6], 300.0, false)?;
    // Non-contiguous inputs.
    case(&backend, &mut rng, [2, 3, 4, 5], 0.0, true)?;
    case(&backend, &mut rng, [6, 4, 9, 7], 1.0, true)
}

#[test]
fn reference_gradients_match_finite_differences() {
    // The analytic formulas of the reference against central differences of its f64 forward.
    let mut rng = Rng(23);
    let d = [2, 2, 3, 2];
    let len = d.iter().product();
    let (x, w, b, g) = (
        to_f64(&rng.values(len, 0.3)),
        to_f64(&rng.values(2, 0.5)),
        to_f64(&rng.values(2, 0.0)),
        to_f64(&rng.values(len, 0.0)),
    );
    let loss = |x: &[f64], w: &[f64], b: &[f64]| -> f64 {
        forward(d, x, w, b)[0].iter().zip(&g).map(|(o, g)| o * g).sum()
    };
    let [dx, dw, db] = gradients(d, &x, &w, &g);
    let h = 1e-6;
    let diff = |v: &[f64], i: usize, f: &dyn Fn(&[f64]) -> f64| {
        let (mut up, mut down) = (v.to_vec(), v.to_vec());
        up[i] += h;
        down[i] -= h;
        (f(&up) - f(&down)) / (2.0 * h)
    };
    for (i, want) in dx.iter().enumerate() {
        let fd = diff(&x, i, &|x| loss(x, &w, &b));
        assert!((fd - want).abs() < 1e-6, "dx[{i}]: {fd} against {want}");
    }
    for i in 0..2 {
        let fd = diff(&w, i, &|w| loss(&x, w, &b));
        assert!((fd - dw[i]).abs() < 1e-6, "dw[{i}]: {fd} against {}", dw[i]);
        let fd = diff(&b, i, &|b| loss(&x, &w, b));
        assert!((fd - db[i]).abs() < 1e-6, "db[{i}]: {fd} against {}", db[i]);
    }
}

#[test]
fn constants_and_partial_gradients() -> Result<()> {
    let backend = CandleBackend::cpu();
    let mut rng = Rng(29);
    let d = [3, 2, 4, 4];
    let x = backend.from_f32(&rng.values(d.iter().product(), 0.0), &d)?;
    let w = backend.from_f32(&rng.values(2, 0.5), &[2])?;
    let b = backend.from_f32(&rng.values(2, 0.0), &[2])?;
    // No variables at all: no graph, same values as with one.
    let constant = x.batch_norm_train(&w, &b, EPS)?;
    let vw = backend.variable(&w)?;
    let bn = x.batch_norm_train(&vw, &b, EPS)?;
    assert_eq!(constant.output.to_vec_f32()?, bn.output.to_vec_f32()?);
    // Only the weight is a variable.
    let grads = bn.output.sqr()?.sum_all()?.gradients(&[&vw])?;
    assert_eq!(grads[0].dims(), [2]);
    // Wrong shapes are errors, not panics.
    assert!(x.batch_norm_train(&backend.from_f32(&[1.0; 3], &[3])?, &b, EPS).is_err());
    assert!(backend.from_f32(&[1.0; 2], &[1, 2, 1, 1])?.batch_norm_train(&w, &b, EPS).is_err());
    Ok(())
}
