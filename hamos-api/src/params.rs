//! Named network parameters and the context of one forward pass: the contract between network
//! plugins ([`Backbone`](crate::Backbone)) and whoever trains or evaluates them.
//!
//! Parameters are stored functionally: a [`ParamStore`] maps PyTorch-style names
//! (`backbone.layer1.0.conv1.weight`) to tensors; an optimizer step replaces a trainable tensor by
//! a fresh variable holding its new value, and a training forward pass reports new buffer values
//! (batch-norm running statistics) through [`Forward::update_buffer`] instead of mutating them,
//! so one forward pass can never see half-updated state.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

/// Whether a named tensor is learned by gradient descent or only updated by forward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamKind {
    /// Learned: a variable that gradients are taken with respect to.
    Trainable,
    /// State such as batch-norm running statistics; never differentiated.
    Buffer,
}

/// One named tensor of a [`ParamStore`].
#[derive(Debug, Clone)]
pub struct Param {
    /// Its values (a variable when trainable).
    pub tensor: Tensor,
    /// Trainable or buffer.
    pub kind: ParamKind,
}

/// Named parameters and buffers of a network on one backend, in insertion order (PyTorch's
/// `state_dict` order when the network registers them in module order).
#[derive(Debug, Clone)]
pub struct ParamStore {
    backend: Arc<dyn Backend>,
    order: Vec<String>,
    entries: BTreeMap<String, Param>,
}

impl ParamStore {
    /// An empty store whose tensors live on `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        ParamStore { backend, order: Vec::new(), entries: BTreeMap::new() }
    }

    /// A store on `backend` filled by `init` (a network's `init`).
    pub fn build(
        backend: Arc<dyn Backend>,
        init: impl FnOnce(&mut ParamStore) -> Result<()>,
    ) -> Result<Self> {
        let mut params = ParamStore::new(backend);
        init(&mut params)?;
        Ok(params)
    }

    /// The backend the tensors live on.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Adds a trainable parameter initialised from `init`; a name already present is an error.
    pub fn add_trainable(&mut self, name: &str, init: &Tensor) -> Result<()> {
        let tensor = self.backend.variable(&init.to_dtype(DType::F32)?)?;
        self.add(name, Param { tensor, kind: ParamKind::Trainable })
    }

    /// Adds a buffer (no gradient); a name already present is an error.
    pub fn add_buffer(&mut self, name: &str, value: &Tensor) -> Result<()> {
        self.add(name, Param { tensor: value.detach()?, kind: ParamKind::Buffer })
    }

    fn add(&mut self, name: &str, param: Param) -> Result<()> {
        if self.entries.contains_key(name) {
            return Err(Error::Data(format!("parameter `{name}` is registered twice")));
        }
        self.order.push(name.to_string());
        self.entries.insert(name.to_string(), param);
        Ok(())
    }

    /// The tensor `name`, or an error naming it and how many parameters exist.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.param(name).map(|p| &p.tensor)
    }

    /// The entry `name`.
    pub fn param(&self, name: &str) -> Result<&Param> {
        self.entries.get(name).ok_or_else(|| {
            Error::Data(format!("no parameter `{name}` among the network's {} tensors", self.entries.len()))
        })
    }

    /// Replaces the value of `name`, keeping its kind: a trainable parameter becomes a fresh
    /// variable, a buffer a detached tensor. The shape and dtype must not change.
    pub fn set(&mut self, name: &str, value: &Tensor) -> Result<()> {
        let backend = self.backend.clone();
        let entry =
            self.entries.get_mut(name).ok_or_else(|| Error::Data(format!("no parameter `{name}` to set")))?;
        let (old, new) = (entry.tensor.dims(), value.dims());
        if old != new || entry.tensor.dtype() != value.dtype() {
            return Err(Error::shape(
                "ParamStore::set",
                format!(
                    "`{name}` is {:?} {old:?}, the new value {:?} {new:?}",
                    entry.tensor.dtype(),
                    value.dtype()
                ),
            ));
        }
        entry.tensor = match entry.kind {
            ParamKind::Trainable => backend.variable(&value.detach()?)?,
            ParamKind::Buffer => value.detach()?,
        };
        Ok(())
    }

    /// Names in insertion order.
    pub fn names(&self) -> &[String] {
        &self.order
    }

    /// Every entry in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Param)> {
        self.order.iter().filter_map(|name| self.entries.get(name).map(|p| (name.as_str(), p)))
    }

    /// The trainable entries in insertion order.
    pub fn trainable(&self) -> Vec<(&str, &Tensor)> {
        self.iter().filter(|(_, p)| p.kind == ParamKind::Trainable).map(|(n, p)| (n, &p.tensor)).collect()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Number of trainable scalars.
    pub fn trainable_count(&self) -> usize {
        self.trainable().iter().map(|(_, t)| t.elem_count()).sum()
    }

    /// Applies the buffer updates a training forward pass reported.
    pub fn apply_updates(&mut self, updates: Vec<(String, Tensor)>) -> Result<()> {
        updates.into_iter().try_for_each(|(name, value)| self.set(&name, &value))
    }
}

/// Training (batch statistics, buffer updates recorded) or evaluation (running statistics,
/// parameters detached so no autograd history is built).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Training.
    Train,
    /// Evaluation and inference.
    Eval,
}

/// The context of one forward pass: where layers read their parameters, and where a training
/// pass records new buffer values. Apply them afterwards with [`ParamStore::apply_updates`].
#[derive(Debug)]
pub struct Forward<'a> {
    params: &'a ParamStore,
    mode: Mode,
    updates: RefCell<Vec<(String, Tensor)>>,
}

impl<'a> Forward<'a> {
    /// A training pass over `params`.
    pub fn train(params: &'a ParamStore) -> Self {
        Forward { params, mode: Mode::Train, updates: RefCell::new(Vec::new()) }
    }

    /// An evaluation pass over `params`.
    pub fn eval(params: &'a ParamStore) -> Self {
        Forward { params, mode: Mode::Eval, updates: RefCell::new(Vec::new()) }
    }

    /// Training or evaluation.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether this is a training pass.
    pub fn is_train(&self) -> bool {
        self.mode == Mode::Train
    }

    /// The store being read.
    pub fn params(&self) -> &ParamStore {
        self.params
    }

    /// The tensor `name` as this pass should use it (detached in evaluation).
    pub fn param(&self, name: &str) -> Result<Tensor> {
        let tensor = self.params.get(name)?;
        match self.mode {
            Mode::Train => Ok(tensor.clone()),
            Mode::Eval => tensor.detach(),
        }
    }

    /// Records the new value of buffer `name` (ignored in evaluation).
    pub fn update_buffer(&self, name: &str, value: Tensor) {
        if self.mode == Mode::Train {
            self.updates.borrow_mut().push((name.to_string(), value));
        }
    }

    /// The buffer updates recorded, in order.
    pub fn into_updates(self) -> Vec<(String, Tensor)> {
        self.updates.into_inner()
    }
}

/// `prefix.name`, or `name` when `prefix` is empty.
pub fn join_name(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}
