<?php
/**
 * Plugin Name:       Stammkunde für WooCommerce
 * Plugin URI:        https://github.com/stammkunde/stammkunde
 * Description:       Shows your customers their Stammkunde points in the shop: a "Punkte" tab in My Account, "earn N points" on product and cart pages, rewards applied in the cart and the checkout, and referral links.
 * Version:           1.0.0
 * Requires at least: 6.4
 * Requires PHP:      7.4
 * Requires Plugins:  woocommerce
 * WC requires at least: 8.5
 * Author:            Stammkunde
 * License:           GPL-2.0-or-later
 * License URI:       https://www.gnu.org/licenses/gpl-2.0.html
 * Text Domain:       stammkunde
 * Domain Path:       /languages
 *
 * @package Stammkunde
 */

defined( 'ABSPATH' ) || exit;

define( 'STAMMKUNDE_VERSION', '1.0.0' );
define( 'STAMMKUNDE_FILE', __FILE__ );
define( 'STAMMKUNDE_DIR', __DIR__ );

require_once __DIR__ . '/includes/class-stammkunde-signer.php';
require_once __DIR__ . '/includes/class-stammkunde-settings.php';
require_once __DIR__ . '/includes/class-stammkunde-client.php';
require_once __DIR__ . '/includes/class-stammkunde-format.php';
require_once __DIR__ . '/includes/class-stammkunde-account.php';
require_once __DIR__ . '/includes/class-stammkunde-cart.php';
require_once __DIR__ . '/includes/class-stammkunde-blocks.php';
require_once __DIR__ . '/includes/class-stammkunde-combination.php';
require_once __DIR__ . '/includes/class-stammkunde-plugin.php';

register_activation_hook( __FILE__, array( 'Stammkunde_Plugin', 'activate' ) );
register_deactivation_hook( __FILE__, array( 'Stammkunde_Plugin', 'deactivate' ) );

Stammkunde_Plugin::instance()->register();
