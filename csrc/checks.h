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

}  // namespace wsis
