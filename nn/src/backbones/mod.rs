//! The backbones, each a [`hamos_api::Backbone`] plugin chosen by `[model] kind = "..."`.

mod mlp;
mod resnet18;
mod small_cnn;

pub use mlp::Mlp;
pub use resnet18::ResNet18Cifar;
pub use small_cnn::SmallCnn;

use hamos_api::{Error, Result, Tensor};

/// Checks that `images` are `[n, c, h, w]` with `[c, h, w] = want`, naming the backbone.
pub(crate) fn check_input(backbone: &'static str, images: &Tensor, want: [usize; 3]) -> Result<()> {
    let dims = images.dims();
    if dims.len() != 4 || dims[1..] != want {
        return Err(Error::shape(
            "backbone",
            format!("`{backbone}` expects images [n, {}, {}, {}], got {dims:?}", want[0], want[1], want[2]),
        ));
    }
    Ok(())
}
