#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../box_math.h"
#include "../op_checks.h"

namespace wsis {
namespace {

// boxes2 goes to structure-of-arrays once so the inner loop over M vectorises.
template <typename T>
void box_iou_impl(const T* a, const T* b, T* out, int64_t B, int64_t N, int64_t M) {
  std::vector<T> soa(static_cast<size_t>(B * M * 5));
  for (int64_t i = 0; i < B * M; ++i) {
    const T* bb = b + i * 4;
    int64_t batch = i / M, j = i % M;
    T* s = soa.data() + batch * M * 5;
    s[j] = bb[0];
    s[M + j] = bb[1];
    s[2 * M + j] = bb[2];
    s[3 * M + j] = bb[3];
    s[4 * M + j] = (bb[2] - bb[0]) * (bb[3] - bb[1]);
  }
  int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(M, 1));
  at::parallel_for(0, B * N, grain, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const T* aa = a + row * 4;
      const T* s = soa.data() + (row / N) * M * 5;
      const T *x1 = s, *y1 = s + M, *x2 = s + 2 * M, *y2 = s + 3 * M, *area = s + 4 * M;
      T ax1 = aa[0], ay1 = aa[1], ax2 = aa[2], ay2 = aa[3];
      T aarea = (ax2 - ax1) * (ay2 - ay1);
      T* o = out + row * M;
      for (int64_t j = 0; j < M; ++j) {
        o[j] = box_iou_one(ax1, ay1, ax2, ay2, aarea, x1[j], y1[j], x2[j], y2[j], area[j]);
      }
    }
  });
}

at::Tensor box_iou_cpu(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  const bool batched = check_box_iou_args(boxes1, boxes2);
  auto a = batched ? boxes1.contiguous() : boxes1.unsqueeze(0).contiguous();
  auto b = batched ? boxes2.contiguous() : boxes2.unsqueeze(0).contiguous();
  int64_t B = a.size(0), N = a.size(1), M = b.size(1);
  auto out = at::empty({B, N, M}, a.options());
  if (out.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "box_iou_cpu", [&] {
      box_iou_impl<scalar_t>(a.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), B, N, M);
    });
  }
  return batched ? out : out.squeeze(0);
}

}  // namespace

TORCH_LIBRARY_IMPL(wsis, CPU, m) { m.impl("box_iou", &box_iou_cpu); }

}  // namespace wsis
