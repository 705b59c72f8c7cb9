// Core of the densehead renderer: a z-buffered triangle rasterizer that interpolates one colour
// per vertex and alpha-blends the winners onto a BGR uint8 frame. No Python in here, so that the
// bindings can run it with the GIL released.
#pragma once

#include <cstdint>
#include <vector>

namespace densehead {

// A BGR uint8 image, H x W x 3, rows packed (C-contiguous).
struct Frame {
    uint8_t* data = nullptr;
    int height = 0;
    int width = 0;
};

// Ambient + Lambert diffuse + Blinn-Phong specular, evaluated per vertex. Directions are in
// image space: x right, y down, z towards the camera. `direction` points from the surface
// towards the light; the viewer sits at +z (orthographic view).
struct Light {
    float ambient = 0.3f;
    float diffuse = 0.6f;
    float specular = 0.2f;
    float shininess = 16.0f;
    float direction[3] = {0.3f, -0.3f, 1.0f};
    float color[3] = {1.0f, 1.0f, 1.0f};  // B, G, R in 0..1
};

enum class Mode { Mesh, Depth, Pncc };

struct Job {
    Frame frame;
    std::vector<const float*> faces;  // one (n_vertices x 3) float array per face
    int n_vertices = 0;
    const int32_t* triangles = nullptr;  // n_triangles x 3
    int n_triangles = 0;
    Mode mode = Mode::Mesh;
    Light light;
    float color[3] = {0.8f, 0.8f, 0.8f};  // mesh albedo, B, G, R in 0..1
    const float* pncc = nullptr;          // n_vertices x 3: normalised x, y, z in 0..1
    float alpha = 1.0f;
    bool black_background = false;
};

// Wall time per phase of one call, in milliseconds.
struct Timings {
    double prepare_ms = 0.0;  // validity, bounding boxes, index check, buffer setup
    double normals_ms = 0.0;  // vertex normals (mesh mode only)
    double shade_ms = 0.0;    // per-vertex colours (lighting for the mesh mode)
    double raster_ms = 0.0;   // triangle setup, z-test, colour interpolation
    double blend_ms = 0.0;    // alpha blend of the covered pixels onto the frame
};

// Renders all faces of the job into one shared z-buffer, then blends onto job.frame in place.
// Throws std::invalid_argument if a triangle index is outside [0, n_vertices).
Timings render(const Job& job);

// Same rasterization, but writes the z-buffer itself: for each pixel the z of the nearest
// surface (in the vertices' own units), NaN where nothing is drawn. `out` must hold
// height * width floats; job.frame only gives the size.
Timings depth_map(const Job& job, float* out);

}  // namespace densehead
