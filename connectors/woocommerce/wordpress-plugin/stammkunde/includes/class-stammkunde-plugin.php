<?php
/**
 * Wires the parts together; activation and deactivation.
 *
 * @package Stammkunde
 */

defined( 'ABSPATH' ) || exit;

/**
 * The plugin (one instance per PHP request).
 */
class Stammkunde_Plugin {

	/**
	 * The instance.
	 *
	 * @var Stammkunde_Plugin|null
	 */
	private static $instance = null;

	/**
	 * Parts.
	 *
	 * @var Stammkunde_Client
	 */
	private $client;

	/**
	 * Parts.
	 *
	 * @var Stammkunde_Cart
	 */
	private $cart;

	/**
	 * The instance, made on first use.
	 *
	 * @return Stammkunde_Plugin
	 */
	public static function instance() {
		if ( null === self::$instance ) {
			self::$instance = new self( new Stammkunde_Client(), new Stammkunde_Cart() );
		}
		return self::$instance;
	}

	/**
	 * Replace the instance (the tests give it their own client).
	 *
	 * @param Stammkunde_Plugin|null $plugin The new instance, or null to make one on next use.
	 */
	public static function set_instance( $plugin ) {
		self::$instance = $plugin;
	}

	/**
	 * Constructor.
	 *
	 * @param Stammkunde_Client $client The app's API.
	 * @param Stammkunde_Cart   $cart   Cart and session work.
	 */
	public function __construct( Stammkunde_Client $client, Stammkunde_Cart $cart ) {
		$this->client = $client;
		$this->cart   = $cart;
	}

	/**
	 * The app's API.
	 *
	 * @return Stammkunde_Client
	 */
	public function client() {
		return $this->client;
	}

	/**
	 * Cart and session work.
	 *
	 * @return Stammkunde_Cart
	 */
	public function cart() {
		return $this->cart;
	}

	/**
	 * Hook everything.
	 */
	public function register() {
		add_action( 'init', array( $this, 'load_textdomain' ) );
		add_action( 'before_woocommerce_init', array( $this, 'declare_compatibility' ) );
		add_action( 'wp_enqueue_scripts', array( $this, 'enqueue_style' ) );
		( new Stammkunde_Settings() )->register();
		( new Stammkunde_Account() )->register();
		$this->cart->register();
		( new Stammkunde_Blocks() )->register();
		( new Stammkunde_Combination() )->register();
	}

	/**
	 * German and English texts (languages/stammkunde-de_DE.mo and friends).
	 */
	public function load_textdomain() {
		load_plugin_textdomain( 'stammkunde', false, dirname( plugin_basename( STAMMKUNDE_FILE ) ) . '/languages' );
	}

	/**
	 * Works with HPOS (the plugin reads no orders) and with the Cart and Checkout blocks.
	 */
	public function declare_compatibility() {
		if ( class_exists( '\Automattic\WooCommerce\Utilities\FeaturesUtil' ) ) {
			\Automattic\WooCommerce\Utilities\FeaturesUtil::declare_compatibility( 'custom_order_tables', STAMMKUNDE_FILE, true );
			\Automattic\WooCommerce\Utilities\FeaturesUtil::declare_compatibility( 'cart_checkout_blocks', STAMMKUNDE_FILE, true );
		}
	}

	/**
	 * A few lines of CSS on the pages that show points.
	 */
	public function enqueue_style() {
		if ( ( function_exists( 'is_account_page' ) && is_account_page() ) || ( function_exists( 'is_cart' ) && is_cart() ) || ( function_exists( 'is_product' ) && is_product() ) || ( function_exists( 'is_checkout' ) && is_checkout() ) ) {
			wp_enqueue_style( 'stammkunde', plugins_url( 'assets/stammkunde.css', STAMMKUNDE_FILE ), array(), STAMMKUNDE_VERSION );
		}
	}

	/**
	 * Redeem a reward for the logged-in customer (the account tab, the cart and the checkout
	 * all come here).
	 *
	 * @param int    $user_id The logged-in customer's WordPress user id.
	 * @param string $reward  Reward name.
	 * @param string $key     The form's idempotency key (a UUID).
	 * @return array|null See Stammkunde_Client::redeem.
	 */
	public function redeem( $user_id, $reward, $key ) {
		if ( $user_id <= 0 || '' === $reward || 1 !== preg_match( '/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i', $key ) ) {
			return array(
				'ok'      => false,
				'message' => '',
			);
		}
		return $this->client->redeem( $user_id, $reward, $key, Stammkunde_Format::language() );
	}

	/**
	 * Activation: register the "punkte" endpoint and flush the rewrite rules once.
	 */
	public static function activate() {
		Stammkunde_Account::add_endpoint();
		flush_rewrite_rules();
	}

	/**
	 * Deactivation: drop the endpoint's rewrite rule.
	 */
	public static function deactivate() {
		flush_rewrite_rules();
	}
}
