import { defineConfig } from "vite";

// Relative asset paths: the API serves the bundle under <root>/console/, whatever its root path.
export default defineConfig({
  base: "./",
  build: { outDir: "dist", emptyOutDir: true, chunkSizeWarningLimit: 1500 },
});
