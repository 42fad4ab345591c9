// Builds the demo page (www/) into dist/. It imports the package exactly as an application
// would (`import init, { StateSync } from 'triesync'`), resolved to the built package in
// pkg/ (run `npm run build:pkg` first). The sync runs in a module Web Worker; webpack emits
// the worker as its own chunk and triesync_bg.wasm as a separate asset file.
import path from 'node:path';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import HtmlWebpackPlugin from 'html-webpack-plugin';
import MiniCssExtractPlugin from 'mini-css-extract-plugin';

const here = path.dirname(fileURLToPath(import.meta.url));
const pkgDir = path.join(here, 'pkg');

if (!fs.existsSync(path.join(pkgDir, 'package.json'))) {
  throw new Error('pkg/ is missing: build the wasm package first (npm run build:pkg)');
}

export default (_env, argv) => {
  const production = argv.mode !== 'development';
  return {
    mode: production ? 'production' : 'development',
    context: path.join(here, 'www'),
    entry: { main: './main.js' },
    output: {
      path: path.join(here, 'dist'),
      filename: production ? '[name].[contenthash:8].js' : '[name].js',
      chunkFilename: production ? '[name].[contenthash:8].js' : '[name].js',
      assetModuleFilename: '[name].[contenthash:8][ext]',
      clean: true,
    },
    resolve: {
      alias: { triesync: pkgDir },
    },
    module: {
      rules: [{ test: /\.css$/, use: [MiniCssExtractPlugin.loader, 'css-loader'] }],
    },
    plugins: [
      new HtmlWebpackPlugin({ template: './index.html', scriptLoading: 'module' }),
      new MiniCssExtractPlugin({ filename: production ? '[name].[contenthash:8].css' : '[name].css' }),
    ],
    devtool: production ? false : 'source-map',
    performance: {
      // The wasm is the point of the page; warn only if it grows a lot.
      maxAssetSize: 600 * 1024,
      maxEntrypointSize: 200 * 1024,
    },
    stats: 'errors-warnings',
  };
};
