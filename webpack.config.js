// Builds the Grafana plugin's frontend into dist/module.js, an AMD module
// whose Grafana and React imports are the host's (externals), and copies
// plugin.json (with the version filled in), the logo and the README.
const path = require('path');
const CopyWebpackPlugin = require('copy-webpack-plugin');
const pkg = require('./package.json');

const today = new Date().toISOString().slice(0, 10);

module.exports = (_env, argv) => ({
  mode: argv.mode || 'production',
  devtool: argv.mode === 'development' ? 'eval-source-map' : 'source-map',
  context: path.join(__dirname, 'src'),
  entry: { module: './module.ts' },
  output: {
    path: path.resolve(__dirname, 'dist'),
    filename: '[name].js',
    library: { type: 'amd' },
    publicPath: `public/plugins/metergate-metergate-datasource/`,
    uniqueName: 'metergate-metergate-datasource',
    // Keep Go binaries and the manifest that `mage` wrote to dist/.
    clean: false,
  },
  externals: [
    'react',
    'react-dom',
    '@grafana/data',
    '@grafana/runtime',
    '@grafana/ui',
    '@grafana/schema',
    '@grafana/i18n',
    '@emotion/css',
    '@emotion/react',
    'rxjs',
    'lodash',
    'i18next',
  ],
  resolve: { extensions: ['.ts', '.tsx', '.js', '.jsx'] },
  module: {
    rules: [
      {
        test: /\.[tj]sx?$/,
        exclude: /node_modules/,
        use: {
          loader: 'swc-loader',
          options: {
            jsc: {
              target: 'es2018',
              parser: { syntax: 'typescript', tsx: true },
              transform: { react: { runtime: 'classic' } },
            },
          },
        },
      },
    ],
  },
  plugins: [
    new CopyWebpackPlugin({
      patterns: [
        {
          from: 'plugin.json',
          to: '.',
          transform: (content) =>
            content.toString().replace('%VERSION%', pkg.version).replace('%TODAY%', today),
        },
        { from: 'img', to: 'img' },
        { from: '../docs/grafana-plugin.md', to: 'README.md' },
      ],
    }),
  ],
  performance: { hints: false },
});
