//! Exact Metropolis-Hastings ratios: for each MCMC kernel, the proposal and the log acceptance
//! ratio it returns equal an independent `f64` reference computed from the target density and
//! the momentum's (or step's) density. The momentum density of the Riemannian kernels is the
//! Gaussian `N(0, B' D B)` in an orthonormal basis `B` of the tangent space (Cholesky, no
//! closed form), so a dropped `log(z' D^-1 z) / 2` term or a kinetic energy `|q|^2 / 2` shows.
#![allow(clippy::unwrap_used)] // a failure there is a test failure
#![allow(clippy::needless_range_loop)] // the f64 references index like the formulas

mod common;

use std::sync::Arc;

use common::{clustered_bank, for_each_backend, unit};
use hamos_api::{Backend, ChainPairs, ClassBank, EnergyEval, OodnessEnergy, Result, Tensor};
use hamos_samplers::mcmc::{ChainState, Chains, Kernel, Target};
use hamos_samplers::{hmc::Hmc, mala::Mala, random_walk::RandomWalk, rmhmc::Mmala, rmhmc::Rmhmc};
use serde::{Deserialize, Serialize};

const DIM: usize = 5;
const CHAINS: usize = 8;

/// `U(z) = -kappa mu.z + beta (nu.z)^2 / 2`: curved, with a closed-form gradient.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Curved {
    kappa: f64,
    beta: f64,
    mu: Vec<f64>,
    nu: Vec<f64>,
}

impl Curved {
    fn new() -> Self {
        let mu = [0.6, -0.2, 0.5, 0.3, -0.5].map(f64::from).to_vec();
        let nu = [0.1, 0.7, -0.3, 0.6, 0.2].map(f64::from).to_vec();
        Curved { kappa: 2.0, beta: 3.0, mu: normalized(&mu), nu: normalized(&nu) }
    }

    fn value(&self, z: &[f64]) -> f64 {
        -self.kappa * dot(&self.mu, z) + 0.5 * self.beta * dot(&self.nu, z).powi(2)
    }

    fn grad(&self, z: &[f64]) -> Vec<f64> {
        let along = dot(&self.nu, z);
        (0..z.len()).map(|i| -self.kappa * self.mu[i] + self.beta * along * self.nu[i]).collect()
    }
}

#[typetag::serde(name = "test_curved")]
impl OodnessEnergy for Curved {
    fn energy_and_grad(&self, z: &Tensor, _pairs: &ChainPairs, _bank: &ClassBank) -> Result<EnergyEval> {
        let rows = z.to_rows_f32()?;
        let rows: Vec<Vec<f64>> = rows.iter().map(|r| r.iter().map(|&x| f64::from(x)).collect()).collect();
        let energy: Vec<f32> = rows.iter().map(|r| self.value(r) as f32).collect();
        let grad: Vec<f32> = rows.iter().flat_map(|r| self.grad(r)).map(|g| g as f32).collect();
        let backend = z.backend();
        Ok(EnergyEval {
            energy: backend.from_f32(&energy, &[rows.len()])?,
            grad: backend.from_f32(&grad, &[rows.len(), DIM])?,
            notes: Vec::new(),
        })
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn normalized(v: &[f64]) -> Vec<f64> {
    let n = dot(v, v).sqrt();
    v.iter().map(|x| x / n).collect()
}

fn tangent(z: &[f64], v: &[f64]) -> Vec<f64> {
    let along = dot(z, v);
    v.iter().zip(z).map(|(x, z)| x - along * z).collect()
}

/// An orthonormal basis of the tangent space at unit `z` (Gram-Schmidt on the axes).
fn tangent_basis(z: &[f64]) -> Vec<Vec<f64>> {
    let mut basis: Vec<Vec<f64>> = Vec::new();
    for axis in 0..z.len() {
        let mut v = vec![0.0; z.len()];
        v[axis] = 1.0;
        let mut v = tangent(z, &v);
        for b in &basis {
            let along = dot(b, &v);
            v.iter_mut().zip(b).for_each(|(x, b)| *x -= along * b);
        }
        if dot(&v, &v) > 1e-6 && basis.len() < z.len() - 1 {
            basis.push(normalized(&v));
        }
    }
    basis
}

/// `log N(q; 0, P D P)` on the tangent space at `z`, up to the constant `(d-1)/2 log 2 pi`:
/// `y = B' q`, `S = B' D B = L L'`, `-|L^-1 y|^2 / 2 - sum log L_ii`.
fn log_momentum_density(z: &[f64], q: &[f64], metric: &[f64]) -> f64 {
    assert!(dot(z, q).abs() < 1e-6, "momentum not tangent");
    let basis = tangent_basis(z);
    let n = basis.len();
    let y: Vec<f64> = basis.iter().map(|b| dot(b, q)).collect();
    let s = |i: usize, j: usize| (0..z.len()).map(|k| basis[i][k] * metric[k] * basis[j][k]).sum::<f64>();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let rest: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            l[i][j] = if i == j { (s(i, i) - rest).sqrt() } else { (s(i, j) - rest) / l[j][j] };
        }
    }
    let mut w = vec![0.0; n];
    for i in 0..n {
        w[i] = (y[i] - (0..i).map(|k| l[i][k] * w[k]).sum::<f64>()) / l[i][i];
    }
    -0.5 * dot(&w, &w) - (0..n).map(|i| l[i][i].ln()).sum::<f64>()
}

/// `steps` leapfrog steps on the sphere: half kick, great circle, half kick.
fn leapfrog(energy: &Curved, z: &[f64], q: &[f64], eps: f64, steps: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut z, mut q) = (z.to_vec(), q.to_vec());
    let kick = |z: &[f64], q: &mut Vec<f64>| {
        let g = tangent(z, &energy.grad(z));
        q.iter_mut().zip(&g).for_each(|(q, g)| *q -= 0.5 * eps * g);
    };
    for _ in 0..steps {
        kick(&z, &mut q);
        let speed = dot(&q, &q).sqrt();
        let (sin, cos) = (speed * eps).sin_cos();
        let z_new: Vec<f64> = z.iter().zip(&q).map(|(z, q)| z * cos + q / speed * sin).collect();
        q = q.iter().zip(&z).map(|(q, z)| q * cos - z * speed * sin).collect();
        z = z_new;
        kick(&z, &mut q);
    }
    (z, q)
}

/// What a kernel does, for the reference: its metric and leapfrog steps (`None`: random walk).
struct Spec {
    name: &'static str,
    kernel: Box<dyn Kernel>,
    step_size: f64,
    steps: Option<usize>,
    /// `(J, lambda)` of the Riemannian kernels.
    metric: Option<(usize, f64)>,
}

fn chains(step_size: f64) -> Chains {
    Chains { step_size, ..Chains::default() }
}

fn specs() -> Vec<Spec> {
    let (eps, lambda) = (0.5, 0.2);
    vec![
        Spec {
            name: "hmc",
            kernel: Box::new(Hmc { chains: chains(eps), leapfrog_steps: 3 }),
            step_size: eps,
            steps: Some(3),
            metric: None,
        },
        Spec {
            name: "mala",
            kernel: Box::new(Mala { chains: chains(eps) }),
            step_size: eps,
            steps: Some(1),
            metric: None,
        },
        Spec {
            name: "rmhmc",
            kernel: Box::new(Rmhmc { chains: chains(eps), leapfrog_steps: 3, history: 2, shrinkage: lambda }),
            step_size: eps,
            steps: Some(3),
            metric: Some((2, lambda)),
        },
        Spec {
            name: "mmala",
            kernel: Box::new(Mmala { chains: chains(eps), history: 2, shrinkage: lambda }),
            step_size: eps,
            steps: Some(1),
            metric: Some((2, lambda)),
        },
        Spec {
            name: "random_walk",
            kernel: Box::new(RandomWalk { chains: chains(eps) }),
            step_size: eps,
            steps: None,
            metric: None,
        },
    ]
}

/// The diagonal metric of the module docs of `rmhmc` from earlier positions, per chain.
fn reference_metric(past: &[Vec<Vec<f64>>], chain: usize, lambda: f64) -> Vec<f64> {
    let count = past.len() as f64;
    let variance: Vec<f64> = (0..DIM)
        .map(|j| {
            let mean = past.iter().map(|p| p[chain][j]).sum::<f64>() / count;
            past.iter().map(|p| (p[chain][j] - mean).powi(2)).sum::<f64>() / count + 1e-12
        })
        .collect();
    let mean = variance.iter().sum::<f64>() / DIM as f64;
    variance.iter().map(|v| lambda + (1.0 - lambda) * v / mean).collect()
}

fn random_units(count: usize, rng: &mut dyn rand::RngCore) -> Vec<f32> {
    (0..count).flat_map(|_| unit(&hamos_api::backend::randn_host(DIM, 0.0, 1.0, rng))).collect()
}

fn rows_f64(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_rows_f32().unwrap().iter().map(|r| r.iter().map(|&x| f64::from(x)).collect()).collect()
}

#[test]
fn every_kernel_returns_the_exact_metropolis_hastings_ratio() {
    for_each_backend(every_kernel_returns_the_exact_metropolis_hastings_ratio_on);
}

fn every_kernel_returns_the_exact_metropolis_hastings_ratio_on(backend: Arc<dyn Backend>) {
    let bank = clustered_bank(&backend, 2, 4, DIM, 0.1, 0).unwrap();
    let pairs = ChainPairs::new(&backend, vec![(0, 1); CHAINS]).unwrap();
    let energy = Curved::new();
    let target = Target { energy: &energy, pairs: &pairs, bank: &bank };
    let mut rng = hamos_api::rng_from_seed(71);
    let positions = backend.from_f32(&random_units(CHAINS, &mut rng), &[CHAINS, DIM]).unwrap();
    // Two earlier positions per chain, spread unevenly over the axes so that D is far from I.
    let history: Vec<Tensor> = (0..2)
        .map(|_| {
            let rows: Vec<f32> = random_units(CHAINS, &mut rng)
                .chunks(DIM)
                .flat_map(|r| {
                    unit(&r.iter().enumerate().map(|(j, x)| x * (1 + 2 * j) as f32).collect::<Vec<_>>())
                })
                .collect();
            backend.from_f32(&rows, &[CHAINS, DIM]).unwrap()
        })
        .collect();
    let past: Vec<Vec<Vec<f64>>> = history.iter().map(rows_f64).collect();
    let state = ChainState { positions: positions.clone(), eval: target.eval(&positions).unwrap(), history };
    let z = rows_f64(&positions);

    for spec in specs() {
        let seed = 100 + spec.name.len() as u64;
        let proposal = spec.kernel.propose(&target, &state, &mut hamos_api::rng_from_seed(seed)).unwrap();
        let got_positions = rows_f64(&proposal.positions);
        // The kernels draw their m d standard normals first.
        let xi = hamos_api::backend::randn_host(CHAINS * DIM, 0.0, 1.0, &mut hamos_api::rng_from_seed(seed));
        let (mut log_term_sizes, mut quadratic_term_sizes) = (0.0f64, 0.0f64);
        for chain in 0..CHAINS {
            let xi: Vec<f64> = xi[chain * DIM..(chain + 1) * DIM].iter().map(|&x| f64::from(x)).collect();
            let metric = match spec.metric {
                Some((_, lambda)) => reference_metric(&past, chain, lambda),
                None => vec![1.0; DIM],
            };
            let zc = &z[chain];
            let (want_z, want_log_accept) = match spec.steps {
                Some(steps) => {
                    let scaled: Vec<f64> = xi.iter().zip(&metric).map(|(x, d)| x * d.sqrt()).collect();
                    let q = tangent(zc, &scaled);
                    let (z1, q1) = leapfrog(&energy, zc, &q, spec.step_size, steps);
                    let log_target = |z: &[f64]| -energy.value(z);
                    let forward = log_target(&z1) + log_momentum_density(&z1, &q1, &metric);
                    let backward = log_target(zc) + log_momentum_density(zc, &q, &metric);
                    // Sizes of the terms a wrong kinetic energy would drop or change.
                    let inverse: Vec<f64> = metric.iter().map(|d| 1.0 / d).collect();
                    let zdz = |z: &[f64]| z.iter().zip(&inverse).map(|(z, w)| z * z * w).sum::<f64>();
                    log_term_sizes += (0.5 * (zdz(&z1).ln() - zdz(zc).ln())).abs();
                    let euclid = 0.5 * (dot(&q1, &q1) - dot(&q, &q));
                    let exact = (log_momentum_density(zc, &q, &metric)
                        - log_momentum_density(&z1, &q1, &metric))
                        - 0.5 * (zdz(&z1).ln() - zdz(zc).ln());
                    quadratic_term_sizes += (euclid - exact).abs();
                    (z1, forward - backward)
                }
                None => {
                    let v: Vec<f64> = tangent(zc, &xi).iter().map(|x| x * spec.step_size).collect();
                    let angle = dot(&v, &v).sqrt();
                    let z1: Vec<f64> =
                        zc.iter().zip(&v).map(|(z, v)| z * angle.cos() + v / angle * angle.sin()).collect();
                    // Symmetric proposal: the ratio is the target's alone.
                    (z1.clone(), energy.value(zc) - energy.value(&z1))
                }
            };
            for j in 0..DIM {
                assert!(
                    (got_positions[chain][j] - want_z[j]).abs() < 1e-5,
                    "{} chain {chain}: proposal {:?} vs {want_z:?}",
                    spec.name,
                    got_positions[chain]
                );
            }
            let got = proposal.log_accept[chain];
            assert!(
                (got - want_log_accept).abs() < 2e-4 * (1.0 + want_log_accept.abs()),
                "{} chain {chain}: log alpha {got} vs exact {want_log_accept}",
                spec.name
            );
        }
        if spec.metric.is_some() {
            // The check has power: the terms a wrong kinetic energy changes are far above the
            // tolerance.
            assert!(log_term_sizes / CHAINS as f64 > 1e-2, "{}: log term {log_term_sizes}", spec.name);
            assert!(
                quadratic_term_sizes / CHAINS as f64 > 1e-2,
                "{}: quadratic {quadratic_term_sizes}",
                spec.name
            );
        }
    }
}
