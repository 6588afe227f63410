export {
  type AlgorithmFixtureFile,
  algorithmCases,
  algorithmFixtureFiles,
} from "./algorithm-fixture-files.js";
export {
  type AllcloseResult,
  type AllcloseTolerance,
  type AllcloseWorst,
  allclose,
  maxAbsDiff,
  relativeL2,
} from "./allclose.js";
export { auditFixtures } from "./audit-fixtures.js";
export { FixtureError } from "./fixture-error.js";
export {
  ALGORITHM_KEYS,
  type AlgorithmKey,
  type FixtureClaim,
  isAlgorithmKey,
  isModelFixtureKind,
  MODEL_FIXTURE_KINDS,
  type ModelFixtureKind,
  NON_FIXTURE_ENTRIES,
  REGISTRY_FILE,
} from "./fixture-registry.js";
export { fixturesOfKind, type ModelFixture, readFixtureIo, readJsonFile } from "./fixtures-of-kind.js";
export { fixturesRoot, repositoryRoot, sharedReferenceDataDir } from "./fixtures-root.js";
export { noise } from "./noise.js";
export { type Float32Tensors, readAllFloat32 } from "./read-all-float32.js";
