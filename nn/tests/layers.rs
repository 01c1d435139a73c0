//! Layers and the optimizer against f64 references computed here, on every backend.
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

mod common;

use common::{backends, max_abs_diff, values};
use hamos_api::{Forward, ParamKind, ParamStore, Tensor};
use hamos_nn::layers::{BatchNorm2d, Linear};
use hamos_nn::optim::{CosineSchedule, Sgd, SgdConfig};

const N: usize = 3;
const C: usize = 2;
const HW: usize = 4;

/// Per channel: mean and biased variance over (n, h, w) of `x` `[N, C, HW]` (flat h*w).
fn channel_stats(x: &[f32]) -> Vec<(f64, f64)> {
    (0..C)
        .map(|c| {
            let v: Vec<f64> =
                (0..N).flat_map(|n| (0..HW).map(move |i| f64::from(x[(n * C + c) * HW + i]))).collect();
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / v.len() as f64;
            (mean, var)
        })
        .collect()
}

#[test]
fn batch_norm_train_and_eval_match_pytorch_semantics() {
    for backend in backends() {
        let x_host: Vec<f32> = values(1, N * C * HW).iter().map(|v| v * 3.0 + 0.5).collect();
        let x = backend.from_f32(&x_host, &[N, C, 2, 2]).unwrap();
        let mut params = ParamStore::new(backend.clone());
        let bn = BatchNorm2d::new("bn", C);
        bn.init(&mut params).unwrap();
        let (gamma, beta) = ([1.5f32, -0.5], [0.25f32, 2.0]);
        params.set("bn.weight", &backend.from_f32(&gamma, &[C]).unwrap()).unwrap();
        params.set("bn.bias", &backend.from_f32(&beta, &[C]).unwrap()).unwrap();

        let pass = Forward::train(&params);
        let y = bn.forward(&pass, &x).unwrap();
        let stats = channel_stats(&x_host);
        let want: Vec<f64> = (0..N * C * HW)
            .map(|i| {
                let c = (i / HW) % C;
                let (mean, var) = stats[c];
                (f64::from(x_host[i]) - mean) / (var + 1e-5).sqrt() * f64::from(gamma[c]) + f64::from(beta[c])
            })
            .collect();
        assert!(max_abs_diff(&y, &want) < 1e-4, "{}: train output", backend.name());

        params.apply_updates(pass.into_updates()).unwrap();
        let count = (N * HW) as f64;
        let running_mean: Vec<f64> = stats.iter().map(|(m, _)| 0.1 * m).collect();
        let running_var: Vec<f64> =
            stats.iter().map(|(_, v)| 0.9 + 0.1 * v * count / (count - 1.0)).collect();
        assert!(max_abs_diff(params.get("bn.running_mean").unwrap(), &running_mean) < 1e-5);
        assert!(max_abs_diff(params.get("bn.running_var").unwrap(), &running_var) < 1e-5);
        assert_eq!(params.get("bn.num_batches_tracked").unwrap().to_vec_i64().unwrap(), vec![1]);
        assert_eq!(params.param("bn.running_mean").unwrap().kind, ParamKind::Buffer);

        let y_eval = bn.forward(&Forward::eval(&params), &x).unwrap();
        let want_eval: Vec<f64> = (0..N * C * HW)
            .map(|i| {
                let c = (i / HW) % C;
                (f64::from(x_host[i]) - running_mean[c]) / (running_var[c] + 1e-5).sqrt()
                    * f64::from(gamma[c])
                    + f64::from(beta[c])
            })
            .collect();
        assert!(max_abs_diff(&y_eval, &want_eval) < 1e-4, "{}: eval output", backend.name());
        // Evaluation records nothing and builds no history on the parameters.
        let eval_pass = Forward::eval(&params);
        bn.forward(&eval_pass, &x).unwrap();
        assert!(eval_pass.into_updates().is_empty());
    }
}

#[test]
fn batch_norm_rejects_a_single_value_per_channel_in_training() {
    for backend in backends() {
        let mut params = ParamStore::new(backend.clone());
        let bn = BatchNorm2d::new("bn", 2);
        bn.init(&mut params).unwrap();
        let x = backend.from_f32(&[1.0, 2.0], &[1, 2, 1, 1]).unwrap();
        let err = bn.forward(&Forward::train(&params), &x).unwrap_err().to_string();
        assert!(err.contains("more than one value per channel"), "{err}");
        let wrong = backend.from_f32(&[0.0; 12], &[1, 3, 2, 2]).unwrap();
        assert!(bn.forward(&Forward::eval(&params), &wrong).is_err());
    }
}

#[test]
fn linear_matches_reference_and_its_gradient() {
    for backend in backends() {
        let (w_host, b_host, x_host) = (values(2, 6), values(3, 2), values(4, 12));
        let mut params = ParamStore::new(backend.clone());
        let layer = Linear::new("fc", 3, 2, true);
        layer.init(&mut params, &mut hamos_api::rng_from_seed(0)).unwrap();
        params.set("fc.weight", &backend.from_f32(&w_host, &[2, 3]).unwrap()).unwrap();
        params.set("fc.bias", &backend.from_f32(&b_host, &[2]).unwrap()).unwrap();
        let x = backend.from_f32(&x_host, &[4, 3]).unwrap();
        let y = layer.forward(&Forward::train(&params), &x).unwrap();
        let want: Vec<f64> = (0..8)
            .map(|i| {
                let (r, o) = (i / 2, i % 2);
                f64::from(b_host[o])
                    + (0..3).map(|k| f64::from(x_host[r * 3 + k]) * f64::from(w_host[o * 3 + k])).sum::<f64>()
            })
            .collect();
        assert!(max_abs_diff(&y, &want) < 1e-5);
        // d sum(y) / dW[o][k] = sum_r x[r][k].
        let grads = y.sum_all().unwrap().gradients(&[params.get("fc.weight").unwrap()]).unwrap();
        let want_grad: Vec<f64> =
            (0..6).map(|i| (0..4).map(|r| f64::from(x_host[r * 3 + i % 3])).sum()).collect();
        assert!(max_abs_diff(&grads[0], &want_grad) < 1e-5);
    }
}

/// Three SGD steps on `p` with gradients `g_t`, against PyTorch's rule computed in f64, with
/// and without Nesterov momentum.
#[test]
fn sgd_follows_pytorch_update_rule() {
    for (backend, nesterov) in backends().into_iter().flat_map(|b| [(b.clone(), false), (b, true)]) {
        let config = SgdConfig { learning_rate: 0.1, momentum: 0.9, weight_decay: 0.01, nesterov };
        let mut sgd = Sgd::new(config).unwrap();
        let mut params = ParamStore::new(backend.clone());
        let p0 = values(5, 4);
        params.add_trainable("p", &backend.from_f32(&p0, &[4]).unwrap()).unwrap();
        let mut p: Vec<f64> = p0.iter().map(|&v| f64::from(v)).collect();
        let mut buf: Option<Vec<f64>> = None;
        for (step, lr) in [0.1, 0.05, 0.02].into_iter().enumerate() {
            let g_host = values(10 + step as u64, 4);
            let g = backend.from_f32(&g_host, &[4]).unwrap();
            sgd.step(&mut params, &[g], lr).unwrap();
            let d: Vec<f64> = g_host.iter().zip(&p).map(|(g, p)| f64::from(*g) + 0.01 * p).collect();
            let b: Vec<f64> = match buf {
                None => d.clone(),
                Some(old) => old.iter().zip(&d).map(|(o, d)| 0.9 * o + d).collect(),
            };
            // torch.optim.SGD: with nesterov the step is g + momentum * buf.
            let direction: Vec<f64> =
                if nesterov { d.iter().zip(&b).map(|(d, b)| d + 0.9 * b).collect() } else { b.clone() };
            p = p.iter().zip(&direction).map(|(p, s)| p - lr * s).collect();
            buf = Some(b);
            assert!(
                max_abs_diff(params.get("p").unwrap(), &p) < 1e-6,
                "{} nesterov {nesterov} step {step}",
                backend.name()
            );
        }
        // Updated parameters are still trainable leaves.
        let loss: Tensor = params.get("p").unwrap().sqr().unwrap().sum_all().unwrap();
        let grad = loss.gradients(&[params.get("p").unwrap()]).unwrap();
        let want: Vec<f64> = p.iter().map(|v| 2.0 * v).collect();
        assert!(max_abs_diff(&grad[0], &want) < 1e-5);
        let err = sgd.step(&mut params, &[], 0.1).unwrap_err().to_string();
        assert!(err.contains("0 gradients for 1 trainable"), "{err}");
    }
}

#[test]
fn cosine_schedule_closed_form() {
    let schedule = CosineSchedule { base: 0.1, min: 0.001, total: 10 };
    assert!((schedule.rate(0) - 0.1).abs() < 1e-12);
    assert!((schedule.rate(5) - (0.001 + 0.099 * 0.5)).abs() < 1e-12);
    assert!((schedule.rate(10) - 0.001).abs() < 1e-12);
    assert!((schedule.rate(12) - 0.001).abs() < 1e-12);
    let quarter = 0.001 + 0.099 * (1.0 + (std::f64::consts::PI * 0.3).cos()) / 2.0;
    assert!((schedule.rate(3) - quarter).abs() < 1e-12);
}
