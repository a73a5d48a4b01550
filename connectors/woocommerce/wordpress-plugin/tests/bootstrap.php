<?php
/**
 * Stubs of the WordPress and WooCommerce functions the plugin calls, with just enough behaviour
 * for the tests to see what the plugin did: options, hooks, notices, the WooCommerce session and
 * cart, outgoing HTTP (a callable the test sets), redirects and the error log.
 *
 * No WordPress is downloaded: these stand in for it.
 *
 * @package Stammkunde
 */

// phpcs:disable

define( 'ABSPATH', __DIR__ . '/' );
define( 'EP_ROOT', 64 );
define( 'EP_PAGES', 4096 );
define( 'ARRAY_A', 'ARRAY_A' );

/** Everything the stubs record, reset before each test. */
final class SK {
	public static $options = array();
	public static $transients = array();
	public static $hooks = array();
	public static $notices = array();
	public static $http = null;
	public static $requests = array();
	public static $user_id = 0;
	public static $locale = 'de_DE';
	public static $redirects = array();
	public static $rewrite_endpoints = array();
	public static $flushed = 0;
	public static $nonce_ok = true;
	public static $coupons = array();
	public static $store_api = array();
	public static $scripts = array();
	public static $blocks = array();
	public static $log_file = '';

	public static function reset() {
		self::$options = array();
		self::$transients = array();
		self::$hooks = array();
		self::$notices = array();
		self::$http = null;
		self::$requests = array();
		self::$user_id = 0;
		self::$locale = 'de_DE';
		self::$redirects = array();
		self::$rewrite_endpoints = array();
		self::$flushed = 0;
		self::$nonce_ok = true;
		self::$coupons = array();
		self::$store_api = array();
		self::$scripts = array();
		self::$blocks = array();
		$GLOBALS['sk_wc'] = new SK_WooCommerce();
		self::$log_file = tempnam( sys_get_temp_dir(), 'sk-log-' );
		ini_set( 'error_log', self::$log_file );
		Stammkunde_Plugin::set_instance( null );
		$_POST = array();
		$_GET = array();
	}

	public static function log() {
		return (string) file_get_contents( self::$log_file );
	}

	public static function configure( $secret = 'test-secret-0123456789', $url = 'https://loyalty.example' ) {
		self::$options['stammkunde_app_url'] = $url;
		self::$options['stammkunde_shop_id'] = '7';
		self::$options['stammkunde_secret'] = $secret;
	}

	/** Answer every app call with `$answers[path without query]` = array(status, body). */
	public static function app( array $answers ) {
		self::$http = function ( $url, $args ) use ( $answers ) {
			$path = (string) parse_url( $url, PHP_URL_PATH );
			if ( ! isset( $answers[ $path ] ) ) {
				return array( 'response' => array( 'code' => 404 ), 'body' => '{"error":"no route"}' );
			}
			list( $status, $body ) = $answers[ $path ];
			return array( 'response' => array( 'code' => $status ), 'body' => is_string( $body ) ? $body : json_encode( $body ) );
		};
	}
}

class WP_Error {
	private $message;
	public function __construct( $code = '', $message = '' ) {
		$this->message = $message;
	}
	public function get_error_message() {
		return $this->message;
	}
}

class SK_Session {
	public $data = array();
	public $cookie = false;
	public function get( $key, $default = null ) {
		return array_key_exists( $key, $this->data ) ? $this->data[ $key ] : $default;
	}
	public function set( $key, $value ) {
		$this->data[ $key ] = $value;
	}
	public function has_session() {
		return $this->cookie;
	}
	public function set_customer_session_cookie( $set ) {
		$this->cookie = (bool) $set;
	}
}

class SK_Cart {
	public $applied = array();
	public $items = 0;
	public $contents_total = 0.0;
	public $contents_tax = 0.0;
	/** The cart's items as WC_Cart::get_cart() gives them (product_id, variation_id, line_total, line_tax). */
	public $cart_items = array();
	/** Codes WooCommerce refuses, with its message. */
	public $refuse = array();
	public function apply_coupon( $code ) {
		$code = strtolower( $code );
		if ( isset( $this->refuse[ $code ] ) ) {
			wc_add_notice( $this->refuse[ $code ], 'error' );
			return false;
		}
		if ( ! isset( SK::$coupons[ $code ] ) ) {
			wc_add_notice( sprintf( 'Coupon "%s" does not exist!', $code ), 'error' );
			return false;
		}
		$this->applied[] = $code;
		wc_add_notice( 'Coupon code applied successfully.', 'success' );
		return true;
	}
	public function has_discount( $code ) {
		return in_array( strtolower( $code ), $this->applied, true );
	}
	public function get_applied_coupons() {
		return $this->applied;
	}
	public function is_empty() {
		return 0 === $this->items;
	}
	public function get_cart_contents_total() {
		return $this->contents_total;
	}
	public function get_cart_contents_tax() {
		return $this->contents_tax;
	}
	public function get_cart() {
		return $this->cart_items;
	}
}

class SK_WooCommerce {
	public $session;
	public $cart;
	public function __construct() {
		$this->session = new SK_Session();
		$this->cart = new SK_Cart();
	}
}

class SK_Product {
	public $price;
	public $price_with_tax;
	public function __construct( $price, $price_with_tax = null ) {
		$this->price = $price;
		$this->price_with_tax = null === $price_with_tax ? $price : $price_with_tax;
	}
	public function get_price() {
		return (string) $this->price;
	}
}

function WC() {
	return $GLOBALS['sk_wc'];
}

function add_action( $hook, $callback, $priority = 10, $args = 1 ) {
	SK::$hooks[ $hook ][] = array( $callback, $priority );
	return true;
}
function add_filter( $hook, $callback, $priority = 10, $args = 1 ) {
	return add_action( $hook, $callback, $priority, $args );
}
function apply_filters( $hook, $value, ...$args ) {
	foreach ( SK::$hooks[ $hook ] ?? array() as $entry ) {
		$value = call_user_func( $entry[0], $value, ...$args );
	}
	return $value;
}
function do_action( $hook, ...$args ) {
	foreach ( SK::$hooks[ $hook ] ?? array() as $entry ) {
		call_user_func( $entry[0], ...$args );
	}
}
function register_activation_hook( $file, $callback ) {}
function register_deactivation_hook( $file, $callback ) {}

function __( $text, $domain = 'default' ) {
	return $text;
}
function _n( $single, $plural, $number, $domain = 'default' ) {
	return 1 === (int) $number ? $single : $plural;
}
function esc_html__( $text, $domain = 'default' ) {
	return esc_html( $text );
}
function esc_html( $text ) {
	return htmlspecialchars( (string) $text, ENT_QUOTES, 'UTF-8' );
}
function esc_attr( $text ) {
	return htmlspecialchars( (string) $text, ENT_QUOTES, 'UTF-8' );
}
function esc_url( $url ) {
	return htmlspecialchars( (string) $url, ENT_QUOTES, 'UTF-8' );
}
function wp_strip_all_tags( $text ) {
	return trim( strip_tags( (string) $text ) );
}
function sanitize_text_field( $text ) {
	return trim( strip_tags( (string) $text ) );
}
function wp_unslash( $value ) {
	return $value;
}

function get_option( $name, $default = false ) {
	return array_key_exists( $name, SK::$options ) ? SK::$options[ $name ] : $default;
}
function update_option( $name, $value, $autoload = null ) {
	SK::$options[ $name ] = $value;
	return true;
}
function delete_option( $name ) {
	unset( SK::$options[ $name ] );
	return true;
}
function get_transient( $name ) {
	return array_key_exists( $name, SK::$transients ) ? SK::$transients[ $name ] : false;
}
function set_transient( $name, $value, $expiration = 0 ) {
	SK::$transients[ $name ] = $value;
	return true;
}

function wp_parse_url( $url, $component = -1 ) {
	return parse_url( $url, $component );
}
function wp_json_encode( $data ) {
	return json_encode( $data );
}
function wp_remote_request( $url, $args ) {
	SK::$requests[] = array( 'url' => $url, 'args' => $args );
	if ( null === SK::$http ) {
		return new WP_Error( 'http_request_failed', 'cURL error 7: Failed to connect' );
	}
	return call_user_func( SK::$http, $url, $args );
}
function wp_remote_retrieve_response_code( $response ) {
	return $response['response']['code'];
}
function wp_remote_retrieve_body( $response ) {
	return $response['body'];
}
function is_wp_error( $thing ) {
	return $thing instanceof WP_Error;
}

function get_current_user_id() {
	return SK::$user_id;
}
function is_user_logged_in() {
	return SK::$user_id > 0;
}
function current_user_can( $capability ) {
	return SK::$user_id > 0;
}
function determine_locale() {
	return SK::$locale;
}
function get_locale() {
	return SK::$locale;
}
function number_format_i18n( $number, $decimals = 0 ) {
	return 0 === strpos( SK::$locale, 'de' ) ? number_format( (float) $number, $decimals, ',', '.' ) : number_format( (float) $number, $decimals );
}
function wp_date( $format, $timestamp ) {
	return gmdate( 'd.m.Y', $timestamp );
}
function wc_price( $amount, $args = array() ) {
	return '<span class="amount">' . number_format( (float) $amount, 2, ',', '.' ) . '&nbsp;&euro;</span>';
}
function home_url( $path = '' ) {
	return 'https://laden.example' . $path;
}
function add_query_arg( $key, $value, $url ) {
	return $url . ( false === strpos( $url, '?' ) ? '?' : '&' ) . $key . '=' . $value;
}
function wp_nonce_field( $action, $name ) {
	echo '<input type="hidden" name="' . $name . '" value="nonce-' . $action . '">';
}
function wp_verify_nonce( $nonce, $action ) {
	return SK::$nonce_ok && $nonce === 'nonce-' . $action ? 1 : false;
}
function wp_generate_uuid4() {
	return sprintf( '%04x%04x-%04x-4%03x-8%03x-%04x%04x%04x', mt_rand( 0, 0xffff ), mt_rand( 0, 0xffff ), mt_rand( 0, 0xffff ), mt_rand( 0, 0xfff ), mt_rand( 0, 0xfff ), mt_rand( 0, 0xffff ), mt_rand( 0, 0xffff ), mt_rand( 0, 0xffff ) );
}
function wc_get_account_endpoint_url( $endpoint ) {
	return 'https://laden.example/mein-konto/' . $endpoint . '/';
}
function wc_get_cart_url() {
	return 'https://laden.example/warenkorb/';
}
function wc_add_notice( $message, $type = 'success' ) {
	SK::$notices[] = array( 'notice' => $message, 'type' => $type );
}
function wc_get_notices( $type = '' ) {
	$found = array();
	foreach ( SK::$notices as $notice ) {
		if ( '' === $type || $notice['type'] === $type ) {
			$found[] = array( 'notice' => $notice['notice'] );
		}
	}
	return $found;
}
function wc_clear_notices() {
	SK::$notices = array();
}
function wp_safe_redirect( $url ) {
	SK::$redirects[] = $url;
	return true;
}
function add_rewrite_endpoint( $name, $places ) {
	SK::$rewrite_endpoints[ $name ] = $places;
}
function flush_rewrite_rules() {
	SK::$flushed++;
}
function wc_get_coupon_id_by_code( $code ) {
	return SK::$coupons[ strtolower( $code ) ] ?? 0;
}
function wc_prices_include_tax() {
	return (bool) get_option( 'woocommerce_prices_include_tax_bool', false );
}
function wc_get_price_including_tax( $product ) {
	return $product->price_with_tax;
}
function wc_get_price_excluding_tax( $product ) {
	return $product->price;
}
function get_woocommerce_currency() {
	return 'EUR';
}
function is_admin() {
	return false;
}
function wp_print_inline_script_tag( $script ) {
	echo '<script>' . $script . '</script>';
}
function plugins_url( $path, $file ) {
	return 'https://laden.example/wp-content/plugins/stammkunde/' . $path;
}
function plugin_basename( $file ) {
	return 'stammkunde/stammkunde.php';
}
function load_plugin_textdomain( $domain, $deprecated, $path ) {
	return true;
}
function add_submenu_page( ...$args ) {
	return 'stammkunde';
}
function register_setting( $group, $name, $args ) {}
function add_settings_error( $setting, $code, $message ) {
	SK::$notices[] = array( 'notice' => $message, 'type' => 'settings-error' );
}
function settings_errors() {}
function settings_fields( $group ) {
	echo '<input type="hidden" name="option_page" value="' . $group . '">';
}
function submit_button() {
	echo '<button type="submit">Save</button>';
}
function has_block( $name ) {
	return in_array( $name, SK::$blocks, true );
}
function wp_enqueue_script( $handle, $src, $deps, $version, $footer ) {
	SK::$scripts[ $handle ] = array( 'src' => $src, 'deps' => $deps );
}
function wp_localize_script( $handle, $name, $data ) {
	SK::$scripts[ $handle ]['l10n'] = array( $name, $data );
}
function wp_enqueue_style( ...$args ) {}
function woocommerce_store_api_register_endpoint_data( $args ) {
	SK::$store_api['endpoint_data'][] = $args;
	return true;
}
function woocommerce_store_api_register_update_callback( $args ) {
	SK::$store_api['update_callback'][] = $args;
	return true;
}

require_once __DIR__ . '/stubs-store-api.php';
require_once dirname( __DIR__ ) . '/stammkunde/stammkunde.php';
