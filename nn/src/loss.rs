//! Cross-entropy, composed from the core ops.

use hamos_api::{Error, Result, Tensor};

/// Mean cross-entropy of `logits` `[n, c]` against class indices `labels` `[n]` (`I64`).
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (l, y) = (logits.dims(), labels.dims());
    if l.len() != 2 || y != [l[0]] || l[0] == 0 {
        return Err(Error::shape(
            "cross_entropy",
            format!("logits {l:?} need labels [n] with n > 0, got {y:?}"),
        ));
    }
    let picked = logits.log_softmax(1)?.gather(1, &labels.reshape(&[l[0], 1])?)?;
    picked.mean_all()?.neg()
}
