//! The fused chain `max_pool2d(relu(batch_norm_train(x)), 2, 2)` of the candle backend (a ReLU
//! and a 2x2 max pooling applied to a fused batch-norm output run as one op from its input)
//! against an f64 reference written with plain loops, and against the unfused ops (reached by
//! reshaping the batch-norm output, which drops its recipe): values and the gradients with
//! respect to input, weight and bias, on seeded random inputs.

use hamos_api::{Backend, Result};
use hamos_candle::CandleBackend;

const RTOL: f64 = 1e-4;
const EPS: f64 = 1e-5;

/// A small seeded generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn values(&mut self, len: usize, offset: f64) -> Vec<f32> {
        (0..len)
            .map(|_| {
                self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = self.0;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                let u = ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64;
                (offset + 2.0 * u - 1.0) as f32
            })
            .collect()
    }
}

/// What follows the batch norm.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Chain {
    Relu,
    ReluPool,
}

/// The f64 reference: the chain's output and the gradients `(dx, dw, db)` of `sum(out * g)`.
fn reference(d: [usize; 4], chain: Chain, x: &[f64], w: &[f64], b: &[f64], g: &[f64]) -> [Vec<f64>; 4] {
    let [n, c, h, wd] = d;
    let (hw, m) = (h * wd, (n * h * wd) as f64);
    let (ho, wo) = (h / 2, wd / 2);
    let idx = |s: usize, ch: usize, i: usize| (s * c + ch) * hw + i;
    let mut z = vec![0.0; x.len()];
    let (mut mean, mut invstd) = (vec![0.0; c], vec![0.0; c]);
    for ch in 0..c {
        let ks: Vec<usize> = (0..n).flat_map(|s| (0..hw).map(move |i| idx(s, ch, i))).collect();
        mean[ch] = ks.iter().map(|&k| x[k]).sum::<f64>() / m;
        let var = ks.iter().map(|&k| (x[k] - mean[ch]).powi(2)).sum::<f64>() / m;
        invstd[ch] = 1.0 / (var + EPS).sqrt();
        for &k in &ks {
            z[k] = (x[k] - mean[ch]) * invstd[ch] * w[ch] + b[ch];
        }
    }
    // The output and the gradient reaching z.
    let (out, dz) = match chain {
        Chain::Relu => {
            let out: Vec<f64> = z.iter().map(|&v| v.max(0.0)).collect();
            let dz = z.iter().zip(g).map(|(&v, &g)| if v > 0.0 { g } else { 0.0 }).collect();
            (out, dz)
        }
        Chain::ReluPool => {
            let (mut out, mut dz) = (vec![0.0; n * c * ho * wo], vec![0.0; x.len()]);
            for p in 0..n * c {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let cells = [(0, 0), (0, 1), (1, 0), (1, 1)]
                            .map(|(i, j)| p * hw + (2 * oy + i) * wd + 2 * ox + j);
                        let best =
                            cells.iter().copied().fold(cells[0], |a, k| if z[k] > z[a] { k } else { a });
                        let o = (p * ho + oy) * wo + ox;
                        out[o] = z[best].max(0.0);
                        if z[best] > 0.0 {
                            dz[best] = g[o];
                        }
                    }
                }
            }
            (out, dz)
        }
    };
    let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
    for ch in 0..c {
        let ks: Vec<usize> = (0..n).flat_map(|s| (0..hw).map(move |i| idx(s, ch, i))).collect();
        for &k in &ks {
            db[ch] += dz[k];
            dw[ch] += dz[k] * (x[k] - mean[ch]) * invstd[ch];
        }
        for &k in &ks {
            let xhat = (x[k] - mean[ch]) * invstd[ch];
            dx[k] = w[ch] * invstd[ch] / m * (m * dz[k] - db[ch] - xhat * dw[ch]);
        }
    }
    [out, dx, dw, db]
}

/// Output, dx, dw, db of the chain on the backend, fused or not.
fn run(
    backend: &CandleBackend,
    d: [usize; 4],
    chain: Chain,
    data: [&[f32]; 4],
    fused: bool,
) -> Result<[Vec<f32>; 4]> {
    let [x, w, b, g] = data;
    let vx = backend.variable(&backend.from_f32(x, &d)?)?;
    let vw = backend.variable(&backend.from_f32(w, &[d[1]])?)?;
    let vb = backend.variable(&backend.from_f32(b, &[d[1]])?)?;
    let bn = vx.batch_norm_train(&vw, &vb, EPS)?.output;
    // A reshape to the same dims is a new tensor without the recipe: the unfused ops run.
    let bn = if fused { bn } else { bn.reshape(&d)? };
    let mut out = bn.relu()?;
    if chain == Chain::ReluPool {
        out = out.max_pool2d(2, 2)?;
    }
    let loss = out.mul(&backend.from_f32(g, &out.dims())?)?.sum_all()?;
    let grads = loss.gradients(&[&vx, &vw, &vb])?;
    Ok([out.to_vec_f32()?, grads[0].to_vec_f32()?, grads[1].to_vec_f32()?, grads[2].to_vec_f32()?])
}

fn check(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1e-3f64, |a, v| a.max(v.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((f64::from(g) - w).abs() <= RTOL * scale, "{what}[{i}]: got {g}, want {w} (scale {scale})");
    }
}

fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&v| f64::from(v)).collect()
}

#[test]
fn fused_relu_and_pool_match_the_reference_and_the_unfused_ops() -> Result<()> {
    let backend = CandleBackend::cpu();
    let mut rng = Rng(41);
    // Even and odd planes (a last odd row and column are dropped), one sample, one channel,
    // planes of 2 x 2, enough planes for several tasks, and a large mean.
    let cases = [
        ([2, 3, 4, 6], 0.0),
        ([3, 2, 5, 7], 0.0),
        ([1, 1, 2, 2], 0.0),
        ([4, 5, 9, 8], 0.3),
        ([16, 4, 6, 6], 0.0),
        ([2, 2, 4, 4], 200.0),
    ];
    for (d, offset) in cases {
        let len = d.iter().product();
        let (x, w, b) = (rng.values(len, offset), rng.values(d[1], 0.5), rng.values(d[1], 0.1));
        for chain in [Chain::Relu, Chain::ReluPool] {
            let out_len = if chain == Chain::Relu { len } else { d[0] * d[1] * (d[2] / 2) * (d[3] / 2) };
            let g = rng.values(out_len, 0.0);
            let want = reference(d, chain, &to_f64(&x), &to_f64(&w), &to_f64(&b), &to_f64(&g));
            let data = [x.as_slice(), &w, &b, &g];
            let fused = run(&backend, d, chain, data, true)?;
            let plain = run(&backend, d, chain, data, false)?;
            for (i, name) in ["output", "dx", "dweight", "dbias"].iter().enumerate() {
                check(&format!("fused {d:?} {chain:?} {name}"), &fused[i], &want[i]);
                check(&format!("unfused {d:?} {chain:?} {name}"), &plain[i], &want[i]);
            }
            assert_eq!(
                run(&backend, d, chain, data, true)?,
                fused,
                "{d:?} {chain:?}: reruns must be bit-identical"
            );
        }
    }
    Ok(())
}

#[test]
fn fusion_keeps_the_batch_norm_output_and_other_windows_unfused() -> Result<()> {
    let backend = CandleBackend::cpu();
    let mut rng = Rng(43);
    let d = [2, 3, 6, 6];
    let x = backend.variable(&backend.from_f32(&rng.values(d.iter().product(), 0.0), &d)?)?;
    let (w, b) = (backend.ones(&[3])?, backend.zeros(&[3])?);
    let bn = x.batch_norm_train(&w, &b, EPS)?.output;
    let relu = bn.relu()?;
    // The batch-norm output itself is still the plain normalization.
    let plain_relu = bn.reshape(&d)?.relu()?;
    assert_eq!(relu.to_vec_f32()?, plain_relu.to_vec_f32()?);
    assert!(bn.to_vec_f32()?.iter().any(|&v| v < 0.0));
    // ReLU twice, and pooling windows other than 2x2 stride 2, take the plain ops.
    assert_eq!(relu.relu()?.to_vec_f32()?, relu.to_vec_f32()?);
    let pooled = relu.max_pool2d(3, 3)?;
    assert_eq!(pooled.to_vec_f32()?, plain_relu.max_pool2d(3, 3)?.to_vec_f32()?);
    // Pooling without the ReLU is not fused either.
    assert_eq!(bn.max_pool2d(2, 2)?.to_vec_f32()?, bn.reshape(&d)?.max_pool2d(2, 2)?.to_vec_f32()?);
    let fused = relu.max_pool2d(2, 2)?;
    assert_eq!(fused.to_vec_f32()?, plain_relu.max_pool2d(2, 2)?.to_vec_f32()?);
    Ok(())
}
