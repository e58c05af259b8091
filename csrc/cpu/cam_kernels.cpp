// The IMG module's two ops: Gaussian-weighted GAP (forward/backward) and the Eq.1 pseudo masks.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../box_math.h"
#include "../op_checks.h"

namespace wsis {
namespace {

template <typename T>
std::vector<T> gap_weights(int64_t H, int64_t W, double sigma) {
  std::vector<T> w(H * W);
  const double norm = gap_norm(H, W, sigma);
  for (int64_t i = 0; i < H; ++i)
    for (int64_t j = 0; j < W; ++j) w[i * W + j] = static_cast<T>(gap_weight(i, j, H, W, sigma, norm));
  return w;
}

template <typename T>
T dot(const T* a, const T* b, int64_t n) {
  T acc = 0;
#pragma omp simd reduction(+ : acc)  // lets the sum reassociate into SIMD lanes
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

at::Tensor weighted_gap_cpu(const at::Tensor& x_, double sigma) {
  check_weighted_gap_args(x_, sigma);
  auto x = x_.contiguous();
  const int64_t R = x.size(0), K = x.size(1), H = x.size(2), W = x.size(3), P = H * W;
  auto out = at::empty({R, K}, x.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "weighted_gap_cpu", [&] {
    auto w = gap_weights<scalar_t>(H, W, sigma);
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, R * K, std::max<int64_t>(1, 32768 / P), [&](int64_t m0, int64_t m1) {
      for (int64_t m = m0; m < m1; ++m) {
        const scalar_t* xm = xp + m * P;
        o[m] = dot(xm, w.data(), P);
      }
    });
  });
  return out;
}

at::Tensor weighted_gap_backward_cpu(const at::Tensor& grad_, double sigma, int64_t H, int64_t W) {
  TORCH_CHECK(grad_.dim() == 2, "grad must have shape [R, K], got ", grad_.sizes());
  auto grad = grad_.contiguous();
  const int64_t R = grad.size(0), K = grad.size(1), P = H * W;
  auto gx = at::empty({R, K, H, W}, grad.options());
  if (gx.numel() == 0) return gx;
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "weighted_gap_backward_cpu", [&] {
    auto w = gap_weights<scalar_t>(H, W, sigma);
    const scalar_t* g = grad.data_ptr<scalar_t>();
    scalar_t* o = gx.data_ptr<scalar_t>();
    at::parallel_for(0, R * K, std::max<int64_t>(1, 32768 / P), [&](int64_t m0, int64_t m1) {
      for (int64_t m = m0; m < m1; ++m)
        for (int64_t p = 0; p < P; ++p) o[m * P + p] = g[m] * w[p];
    });
  });
  return gx;
}

// One pass per map: min/max, then normalise and accumulate over the L levels.
std::tuple<at::Tensor, at::Tensor> cam_pseudo_masks_cpu(const at::Tensor& cams_, double xi) {
  check_cam_pseudo_masks_args(cams_);
  auto cams = cams_.contiguous();
  const int64_t L = cams.size(0), R = cams.size(1), K = cams.size(2), H = cams.size(3), W = cams.size(4);
  const int64_t P = H * W, maps = R * K;
  auto mean = at::empty({R, K, H, W}, cams.options());
  auto mask = at::empty({R, K, H, W}, cams.options().dtype(at::kBool));
  if (mean.numel() == 0) return {mean, mask};
  AT_DISPATCH_FLOATING_TYPES(cams.scalar_type(), "cam_pseudo_masks_cpu", [&] {
    const scalar_t* in = cams.data_ptr<scalar_t>();
    scalar_t* mo = mean.data_ptr<scalar_t>();
    bool* ko = mask.data_ptr<bool>();
    const scalar_t thr = static_cast<scalar_t>(xi);
    at::parallel_for(0, maps, std::max<int64_t>(1, 16384 / P), [&](int64_t m0, int64_t m1) {
      for (int64_t m = m0; m < m1; ++m) {
        scalar_t* acc = mo + m * P;
        for (int64_t l = 0; l < L; ++l) {
          const scalar_t* v = in + (l * maps + m) * P;
          scalar_t lo = v[0], hi = v[0];
          for (int64_t p = 1; p < P; ++p) lo = min_(lo, v[p]), hi = max_(hi, v[p]);
          const scalar_t range = hi - lo;
          for (int64_t p = 0; p < P; ++p) {
            const scalar_t n = range > 0 ? (v[p] - lo) / range : scalar_t(0);
            acc[p] = l == 0 ? n : acc[p] + n;
          }
        }
        for (int64_t p = 0; p < P; ++p) {
          acc[p] /= static_cast<scalar_t>(L);
          ko[m * P + p] = acc[p] > thr;
        }
      }
    });
  });
  return {mean, mask};
}

}  // namespace

TORCH_LIBRARY_IMPL(wsis, CPU, m) {
  m.impl("weighted_gap", &weighted_gap_cpu);
  m.impl("_weighted_gap_backward", &weighted_gap_backward_cpu);
  m.impl("cam_pseudo_masks", &cam_pseudo_masks_cpu);
}

}  // namespace wsis
