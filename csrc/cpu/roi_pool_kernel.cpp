// roi_pool with torchvision's exact forward and gradient. The forward reads the feature map
// channels-last, so each bin is a running max over contiguous channel vectors (SIMD), and runs
// rois in parallel; the backward runs channels in parallel, which needs no atomics.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cfloat>
#include <vector>

#include "../box_math.h"
#include "../op_checks.h"

namespace wsis {
namespace {

// mv/mi: the running max of one bin over C channels and where it was. Written with a
// bitmask blend so that GCC vectorises it (a plain ternary on mi stays a branch).
template <typename T>
inline void running_max(const T* __restrict__ px, T* __restrict__ mv, int* __restrict__ mi, int64_t C, int idx) {
  for (int64_t c = 0; c < C; ++c) {
    const T v = px[c], m = mv[c];
    const int take = -static_cast<int>(v > m);  // strict: the first maximum wins, as torchvision
    mv[c] = v > m ? v : m;
    mi[c] = (mi[c] & ~take) | (idx & take);
  }
}

template <typename T>
void roi_pool_forward_impl(const T* input_nhwc, const T* rois, int64_t K, int64_t C, int64_t H, int64_t W,
                           int64_t PH, int64_t PW, T spatial_scale, T* out, int* argmax) {
  const int64_t P = PH * PW;
  at::parallel_for(0, K, 1, [&](int64_t k0, int64_t k1) {
    // One output row (ph) at a time: [PW, C] stays in L2 even at 28x28 with 1024 channels.
    std::vector<T> maxv(PW * C);
    std::vector<int> maxi(PW * C);
    for (int64_t k = k0; k < k1; ++k) {
      const T* roi = rois + k * 5;
      const int64_t b = static_cast<int64_t>(roi[0]);
      RoiGeometry<T> geo(roi, spatial_scale, PH, PW);
      for (int64_t ph = 0; ph < PH; ++ph) {
        for (int64_t pw = 0; pw < PW; ++pw) {
          RoiBin bin = geo.bin(ph, pw, H, W);
          T* mv = maxv.data() + pw * C;
          int* mi = maxi.data() + pw * C;
          std::fill(mv, mv + C, bin.empty() ? T(0) : T(-FLT_MAX));
          std::fill(mi, mi + C, -1);
          for (int h = bin.hstart; h < bin.hend; ++h) {
            for (int w = bin.wstart; w < bin.wend; ++w) {
              running_max(input_nhwc + ((b * H + h) * W + w) * C, mv, mi, C, h * static_cast<int>(W) + w);
            }
          }
        }
        // [PW, C] -> out[k, :, ph, :], 16 channels at a time: reads stay on a cache line and
        // the 16 output rows being written stay in L1.
        T* o = out + k * C * P + ph * PW;
        int* a = argmax + k * C * P + ph * PW;
        for (int64_t c0 = 0; c0 < C; c0 += 16) {
          const int64_t c1 = std::min<int64_t>(c0 + 16, C);
          for (int64_t pw = 0; pw < PW; ++pw) {
            for (int64_t c = c0; c < c1; ++c) {
              o[c * P + pw] = maxv[pw * C + c];
              a[c * P + pw] = maxi[pw * C + c];
            }
          }
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> roi_pool_cpu(const at::Tensor& input, const at::Tensor& rois_,
                                                double spatial_scale, int64_t pooled_height, int64_t pooled_width) {
  check_roi_pool_args(input, rois_, pooled_height, pooled_width);
  const int64_t K = rois_.size(0), C = input.size(1), H = input.size(2), W = input.size(3);
  // Every element is written by the kernel: no fill needed.
  auto out = at::empty({K, C, pooled_height, pooled_width}, input.options());
  auto argmax = at::empty({K, C, pooled_height, pooled_width}, input.options().dtype(at::kInt));
  if (out.numel() == 0) return {out, argmax};
  // A no-op when the caller already holds a channels-last map.
  auto x = input.contiguous(at::MemoryFormat::ChannelsLast);
  auto rois = rois_.contiguous();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "roi_pool_cpu", [&] {
    roi_pool_forward_impl<scalar_t>(x.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(), K, C, H, W, pooled_height,
                                    pooled_width, static_cast<scalar_t>(spatial_scale), out.data_ptr<scalar_t>(),
                                    argmax.data_ptr<int>());
  });
  return {out, argmax};
}

at::Tensor roi_pool_backward_cpu(const at::Tensor& grad_, const at::Tensor& rois_, const at::Tensor& argmax_,
                                 int64_t batch_size, int64_t channels, int64_t height, int64_t width) {
  check_roi_pool_backward_args(grad_, rois_, argmax_, batch_size, channels);
  auto grad_input = at::zeros({batch_size, channels, height, width}, grad_.options());
  if (grad_.numel() == 0) return grad_input;
  auto grad = grad_.contiguous();
  auto argmax = argmax_.contiguous();
  auto rois = rois_.contiguous();
  const int64_t K = grad.size(0), P = grad.size(2) * grad.size(3), HW = height * width;
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "roi_pool_backward_cpu", [&] {
    const scalar_t* g = grad.data_ptr<scalar_t>();
    const int* am = argmax.data_ptr<int>();
    const scalar_t* r = rois.data_ptr<scalar_t>();
    scalar_t* gi = grad_input.data_ptr<scalar_t>();
    // Each channel plane is written by one thread only; per element the sum runs over
    // rois then bins, torchvision's order, so the result is bit-identical.
    at::parallel_for(0, channels, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        for (int64_t k = 0; k < K; ++k) {
          scalar_t* plane = gi + (static_cast<int64_t>(r[k * 5]) * channels + c) * HW;
          const scalar_t* gk = g + (k * channels + c) * P;
          const int* ak = am + (k * channels + c) * P;
          for (int64_t p = 0; p < P; ++p) {
            if (ak[p] >= 0) plane[ak[p]] += gk[p];
          }
        }
      }
    });
  });
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(wsis, CPU, m) {
  m.impl("roi_pool", &roi_pool_cpu);
  m.impl("_roi_pool_backward", &roi_pool_backward_cpu);
}

}  // namespace wsis
