// pybind11 bindings of the renderer: strict checks on the numpy inputs (no silent copies: the
// frame is drawn on in place, so a converted copy would throw the drawing away), then the C++
// work with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "render_core.hpp"

namespace py = pybind11;
using densehead::Job;
using densehead::Timings;

namespace {

std::string describe(const py::array& a) {
    std::ostringstream os;
    os << py::str(a.dtype()).cast<std::string>() << " with shape (";
    for (py::ssize_t k = 0; k < a.ndim(); ++k) os << (k ? ", " : "") << a.shape(k);
    os << (a.ndim() == 1 ? ",)" : ")");
    return os.str();
}

// Returns obj as a numpy array of the given dtype and trailing shape, C-contiguous, or raises
// a TypeError/ValueError that names the argument and says what was expected.
template <typename T>
py::array expect_array(const py::handle& obj, const std::string& name, int ndim, int last_dim,
                       const std::string& expected) {
    if (!py::isinstance<py::array>(obj)) {
        throw py::type_error(name + " must be a numpy array " + expected + ", got " +
                             py::str(py::type::of(obj)).cast<std::string>());
    }
    auto a = py::reinterpret_borrow<py::array>(obj);
    if (!a.dtype().is(py::dtype::of<T>())) {
        throw py::type_error(name + " must be " + expected + ", got " + describe(a) +
                             " (convert with .astype(np." +
                             py::str(py::dtype::of<T>()).cast<std::string>() + "))");
    }
    if (a.ndim() != ndim || (last_dim > 0 && a.shape(ndim - 1) != last_dim)) {
        throw py::value_error(name + " must be " + expected + ", got " + describe(a));
    }
    if (!(a.flags() & py::array::c_style)) {
        throw py::value_error(name + " must be C-contiguous (use np.ascontiguousarray), got a "
                              "strided view " + describe(a));
    }
    return a;
}

Job make_job(const py::object& frame_obj, const py::object& faces_obj,
             const py::object& tri_obj, std::vector<py::array>& keep) {
    Job job;
    py::array frame = expect_array<uint8_t>(frame_obj, "frame", 3, 3, "uint8 of shape (H, W, 3)");
    if (!frame.writeable()) throw py::value_error("frame is read-only; it is drawn on in place");
    job.frame.data = static_cast<uint8_t*>(frame.mutable_data());
    job.frame.height = static_cast<int>(frame.shape(0));
    job.frame.width = static_cast<int>(frame.shape(1));
    keep.push_back(frame);

    py::array tri = expect_array<int32_t>(tri_obj, "triangles", 2, 3, "int32 of shape (M, 3)");
    job.triangles = static_cast<const int32_t*>(tri.data());
    job.n_triangles = static_cast<int>(tri.shape(0));
    keep.push_back(tri);

    if (py::isinstance<py::array>(faces_obj) || !py::isinstance<py::sequence>(faces_obj)) {
        throw py::type_error("vertices_list must be a list of float32 (N, 3) arrays, one per face");
    }
    auto faces = py::reinterpret_borrow<py::sequence>(faces_obj);
    job.n_vertices = -1;
    for (size_t f = 0; f < faces.size(); ++f) {
        const std::string name = "vertices_list[" + std::to_string(f) + "]";
        py::array v = expect_array<float>(faces[f], name, 2, 3, "float32 of shape (N, 3)");
        const int n = static_cast<int>(v.shape(0));
        if (job.n_vertices >= 0 && n != job.n_vertices) {
            throw py::value_error(name + " has " + std::to_string(n) + " vertices, the first face " +
                                  std::to_string(job.n_vertices) + "; all faces share the triangles");
        }
        job.n_vertices = n;
        job.faces.push_back(static_cast<const float*>(v.data()));
        keep.push_back(v);
    }
    if (job.n_vertices < 0) job.n_vertices = 0;
    return job;
}

float check_alpha(double alpha) {
    if (!(alpha >= 0.0 && alpha <= 1.0)) throw py::value_error("alpha must be in [0, 1]");
    return static_cast<float>(alpha);
}

void copy3(const std::array<double, 3>& src, float* dst, const char* name) {
    for (int k = 0; k < 3; ++k) {
        if (!std::isfinite(src[k])) throw py::value_error(std::string(name) + " must be finite");
        dst[k] = static_cast<float>(src[k]);
    }
}

py::dict to_dict(const Timings& t) {
    py::dict d;
    d["prepare"] = t.prepare_ms;
    d["normals"] = t.normals_ms;
    d["shade"] = t.shade_ms;
    d["raster"] = t.raster_ms;
    d["blend"] = t.blend_ms;
    return d;
}

Timings run(const Job& job) {
    py::gil_scoped_release release;  // numpy buffers are kept alive by the caller's `keep`
    return densehead::render(job);
}

py::dict render_mesh(const py::object& frame, const py::object& faces, const py::object& tri,
                     std::array<double, 3> color, double ambient, double diffuse, double specular,
                     double shininess, std::array<double, 3> direction,
                     std::array<double, 3> light_color, double alpha) {
    std::vector<py::array> keep;
    Job job = make_job(frame, faces, tri, keep);
    job.mode = densehead::Mode::Mesh;
    copy3(color, job.color, "color");
    copy3(direction, job.light.direction, "light.direction");
    copy3(light_color, job.light.color, "light.color");
    for (double x : {ambient, diffuse, specular, shininess}) {
        if (!std::isfinite(x)) throw py::value_error("light intensities must be finite");
    }
    job.light.ambient = static_cast<float>(ambient);
    job.light.diffuse = static_cast<float>(diffuse);
    job.light.specular = static_cast<float>(specular);
    job.light.shininess = static_cast<float>(shininess);
    job.alpha = check_alpha(alpha);
    return to_dict(run(job));
}

py::dict render_depth(const py::object& frame, const py::object& faces, const py::object& tri,
                      double alpha, bool black_background) {
    std::vector<py::array> keep;
    Job job = make_job(frame, faces, tri, keep);
    job.mode = densehead::Mode::Depth;
    job.alpha = check_alpha(alpha);
    job.black_background = black_background;
    return to_dict(run(job));
}

py::dict render_pncc(const py::object& frame, const py::object& faces, const py::object& tri,
                     const py::object& pncc_obj, double alpha, bool black_background) {
    std::vector<py::array> keep;
    Job job = make_job(frame, faces, tri, keep);
    py::array pncc = expect_array<float>(pncc_obj, "pncc_colors", 2, 3, "float32 of shape (N, 3)");
    if (!job.faces.empty() && pncc.shape(0) != job.n_vertices) {
        throw py::value_error("pncc_colors has " + std::to_string(pncc.shape(0)) +
                              " rows, the faces have " + std::to_string(job.n_vertices) +
                              " vertices");
    }
    keep.push_back(pncc);
    job.pncc = static_cast<const float*>(pncc.data());
    job.mode = densehead::Mode::Pncc;
    job.alpha = check_alpha(alpha);
    job.black_background = black_background;
    return to_dict(run(job));
}

py::tuple depth_map(int height, int width, const py::object& faces, const py::object& tri) {
    if (height <= 0 || width <= 0) throw py::value_error("height and width must be positive");
    // A throwaway 1x1x3 frame satisfies make_job; only its size is replaced below.
    py::array_t<uint8_t> dummy({1, 1, 3});
    std::vector<py::array> keep;
    Job job = make_job(dummy, faces, tri, keep);
    job.frame.height = height;
    job.frame.width = width;
    job.frame.data = nullptr;  // depth_map never touches the frame
    py::array_t<float> out({height, width});
    float* dst = out.mutable_data();
    Timings t;
    {
        py::gil_scoped_release release;
        t = densehead::depth_map(job, dst);
    }
    return py::make_tuple(out, to_dict(t));
}

}  // namespace

PYBIND11_MODULE(_render, m) {
    m.doc() = "densehead C++ renderer: z-buffered mesh, depth and PNCC (use densehead.render)";
    m.def("render_mesh", &render_mesh, py::arg("frame"), py::arg("vertices_list"),
          py::arg("triangles"), py::arg("color"), py::arg("ambient"), py::arg("diffuse"),
          py::arg("specular"), py::arg("shininess"), py::arg("direction"),
          py::arg("light_color"), py::arg("alpha"),
          "Lit mesh blended in place onto frame; returns per-phase times in ms.");
    m.def("render_depth", &render_depth, py::arg("frame"), py::arg("vertices_list"),
          py::arg("triangles"), py::arg("alpha"), py::arg("black_background"),
          "Per-face normalised depth as grey, blended in place; returns per-phase times in ms.");
    m.def("render_pncc", &render_pncc, py::arg("frame"), py::arg("vertices_list"),
          py::arg("triangles"), py::arg("pncc_colors"), py::arg("alpha"),
          py::arg("black_background"),
          "PNCC blended in place; returns per-phase times in ms.");
    m.def("depth_map", &depth_map, py::arg("height"), py::arg("width"),
          py::arg("vertices_list"), py::arg("triangles"),
          "float32 (H, W) z of the nearest surface, NaN where empty; and times.");
}
