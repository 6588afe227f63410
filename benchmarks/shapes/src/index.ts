export {
  SHAPES_BENCHMARK_DEFAULTS,
  ShapesBenchmark,
  type ShapesBenchmarkOptions,
} from "./shapes-benchmark.js";
