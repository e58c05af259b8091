// Argument checks shared by every backend. The Python API checks first with friendlier
// messages; these keep direct torch.ops.wsis calls from ever reading out of bounds.
#pragma once
#include <ATen/ATen.h>

namespace wsis {

inline void check_boxes(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 2 && t.size(1) == 4, name, " must have shape [N, 4], got ", t.sizes());
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), name, " must be a floating tensor, got ", t.scalar_type());
}

inline void check_same_device(const at::Tensor& a, const char* an, const at::Tensor& b, const char* bn) {
  TORCH_CHECK(a.device() == b.device(), an, " and ", bn, " must be on the same device, got ", a.device(),
              " and ", b.device());
}

inline void check_same_dtype(const at::Tensor& a, const char* an, const at::Tensor& b, const char* bn) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), an, " and ", bn, " must have the same dtype, got ",
              a.scalar_type(), " and ", b.scalar_type());
}

// Reads rois[:, 0] (a device sync on CUDA): an index outside the batch is an error, not garbage.
inline void check_roi_batch_indices(const at::Tensor& rois, int64_t batch_size) {
  if (rois.size(0) == 0) return;
  auto [min_t, max_t] = at::aminmax(rois.select(1, 0));
  auto range = at::stack({min_t, max_t}).to(at::kCPU, at::kDouble);  // one host sync
  const double lo = range[0].item<double>(), hi = range[1].item<double>();
  TORCH_CHECK(lo >= 0 && hi < batch_size, "rois[:, 0] (batch index) must lie in [0, ", batch_size,
              "), got values in [", lo, ", ", hi, "]");
}

}  // namespace wsis
