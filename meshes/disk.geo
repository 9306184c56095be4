// The disk |x - c| <= R in the plane z = 0, meshed with triangles of target size h.
//
// solver/mesh.py sets cx, cy, R and h through gmsh's parser before loading this file;
// DefineConstant keeps those values and only fills in the defaults below when this file is
// opened on its own (e.g. `gmsh disk.geo -2`).
// The OpenCASCADE circle is parametrized exactly, so boundary vertices lie on |x - c| = R.
SetFactory("OpenCASCADE");

DefineConstant[ cx = 0.0, cy = 0.0, R = 1.0, h = 0.1 ];

Disk(1) = {cx, cy, 0, R};

// model_to_mesh builds the dolfinx mesh from the physical groups of highest dimension.
Physical Surface("domain", 1) = {1};

Mesh.MeshSizeMin = 0;
Mesh.MeshSizeMax = h;
Mesh.MeshSizeFromCurvature = 0;
Mesh.ElementOrder = 1;
