//! Unit tests of the tch tensor: ops against hand-computed values, errors instead of panics on
//! bad input, exact non-accumulating gradients.

use hamos_api::{Backend, DType, DeviceSpec, Tensor};

use crate::{set_threads, TchBackend};

fn cpu() -> TchBackend {
    set_threads(1);
    TchBackend::new(DeviceSpec::Cpu).unwrap()
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
}

#[test]
fn matmul_and_broadcast_ops() {
    let b = cpu();
    let x = b.from_f32(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
    let y = b.from_f32(&[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2]).unwrap();
    let z = x.matmul(&y).unwrap();
    assert_eq!(z.dims(), vec![2, 2]);
    assert_eq!(z.to_vec_f32().unwrap(), vec![4.0, 5.0, 10.0, 11.0]);

    let row = b.from_f32(&[10.0, 20.0, 30.0], &[3]).unwrap();
    let sum = x.add(&row).unwrap();
    assert_eq!(sum.to_vec_f32().unwrap(), vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
    assert_eq!(x.sum(1, false).unwrap().to_vec_f32().unwrap(), vec![6.0, 15.0]);
    assert_eq!(x.max(0, true).unwrap().dims(), vec![1, 3]);
    assert_eq!(x.argmax(1, false).unwrap().to_vec_i64().unwrap(), vec![2, 2]);
    assert_eq!(x.affine(2.0, 1.0).unwrap().to_vec_f32().unwrap()[..2], [3.0, 5.0]);
    let mask = x.gt(&b.from_f32(&[3.0], &[1]).unwrap()).unwrap();
    assert_eq!(mask.dtype(), DType::F32);
    assert_eq!(mask.to_vec_f32().unwrap(), vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    let picked = mask.where_mask(&x, &x.neg().unwrap()).unwrap();
    assert_eq!(picked.to_vec_f32().unwrap(), vec![-1.0, -2.0, -3.0, 4.0, 5.0, 6.0]);

    let (values, indices) = x.topk(2, 1, true).unwrap();
    assert_eq!(values.to_vec_f32().unwrap(), vec![3.0, 2.0, 6.0, 5.0]);
    assert_eq!(indices.dtype(), DType::I64);
    assert_eq!(indices.to_vec_i64().unwrap(), vec![2, 1, 2, 1]);
    let idx = b.from_i64(&[1, 0, 1], &[3]).unwrap();
    let rows = x.index_select(0, &idx).unwrap();
    assert_eq!(rows.to_rows_f32().unwrap()[2], vec![4.0, 5.0, 6.0]);
    let cat = Tensor::cat(&[&x, &x], 0).unwrap();
    assert_eq!(cat.dims(), vec![4, 3]);
}

#[test]
fn bad_input_gives_errors_not_panics() {
    let b = cpu();
    let x = b.from_f32(&[1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    assert!(b.from_f32(&[1.0, 2.0, 3.0], &[2, 2]).is_err());
    assert!(x.sum(2, false).is_err());
    assert!(x.transpose(0, 5).is_err());
    assert!(x.narrow(1, 1, 2).is_err());
    assert!(x.reshape(&[3]).is_err());
    assert!(x.topk(3, 1, true).is_err());
    assert!(x.matmul(&b.from_f32(&[1.0; 6], &[3, 2]).unwrap()).is_err());
    assert!(x.add(&b.from_f32(&[1.0; 3], &[3]).unwrap()).is_err());
    let bad = b.from_i64(&[0, 2], &[2]).unwrap();
    assert!(x.index_select(0, &bad).is_err());
    assert!(x.index_select(0, &x).is_err());
    assert!(x.broadcast_as(&[3, 2]).is_err());
    assert!(b.variable(&bad).is_err());
}

#[test]
fn gradients_are_exact_and_do_not_accumulate() {
    let b = cpu();
    let w = b.variable(&b.from_f32(&[1.0, -2.0, 3.0], &[3]).unwrap()).unwrap();
    let unused = b.variable(&b.zeros(&[2]).unwrap()).unwrap();
    let constant = b.from_f32(&[1.0], &[1]).unwrap();
    // loss = sum(w^2) + max(w) = 14 + 3; d/dw = 2w + onehot(argmax)
    let loss = w.sqr().unwrap().sum(0, true).unwrap().add(&w.max(0, true).unwrap()).unwrap();
    assert_eq!(loss.to_vec_f32().unwrap(), vec![17.0]);
    for _ in 0..2 {
        let grads = loss.gradients(&[&w, &unused, &constant]).unwrap();
        assert!(close(&grads[0].to_vec_f32().unwrap(), &[2.0, -4.0, 7.0]));
        assert_eq!(grads[1].to_vec_f32().unwrap(), vec![0.0, 0.0]);
        assert_eq!(grads[2].to_vec_f32().unwrap(), vec![0.0]);
    }
    // The last differentiation frees the graph: same values, then an error (not a panic).
    let loss = w.sqr().unwrap().sum(0, true).unwrap();
    let released = loss.gradients_release(&[&w, &unused]).unwrap();
    assert!(close(&released[0].to_vec_f32().unwrap(), &[2.0, -4.0, 6.0]));
    assert_eq!(released[1].to_vec_f32().unwrap(), vec![0.0, 0.0]);
    assert!(loss.gradients(&[&w]).is_err());
    // Through topk values and a detached branch.
    let (top, _) = w.topk(1, 0, false).unwrap();
    let loss = top.mul(&w.detach().unwrap().sum(0, true).unwrap()).unwrap();
    let grads = loss.gradients(&[&w]).unwrap();
    assert!(close(&grads[0].to_vec_f32().unwrap(), &[0.0, 2.0, 0.0]));
}
